"""uvicorn's httptools protocol, with each answer written in one system call, counting the
connections it has open (the group-commit writer stops waiting once all of them are in a batch).

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and its body on `http.response.body`: two `send()`s, and for a small answer such as a
postback's "OK" two wake-ups of the client. Here what a connection writes during one turn of
the event loop goes out together at the start of the next.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_open_connections = 0


def open_connections() -> int:
    """How many HTTP connections this process has open."""
    return _open_connections


class OneWriteProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        global _open_connections
        _open_connections += 1
        super().connection_made(GatheringTransport(transport, self.loop))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        global _open_connections
        _open_connections -= 1
        super().connection_lost(exc)


class GatheringTransport:
    """`transport`, except that writes are held until the loop's next turn, then joined."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():  # the peer left meanwhile: nobody to tell
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)  # reading flow, extra info, is_closing, …
