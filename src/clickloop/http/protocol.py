"""uvicorn's httptools protocol, with each answer written in one system call, counting the
connections it has open (the group-commit writer stops waiting once all of them are in a batch),
and bounding what a client may hold: the time to send a request, the connections, the target.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and its body on `http.response.body`: two `send()`s, and for a small answer such as a
postback's "OK" two wake-ups of the client. Here what a connection writes during one turn of
the event loop goes out together at the start of the next.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# The longest request target (path and query) read; a longer one is answered 414.
MAX_TARGET_BYTES = 1024 * 1024
# httptools.parse_url keeps offsets in 16 bits and refuses a longer target (uvicorn answers 400).
_PARSE_URL_MAX = 65535
# After a refusal, how long what the client still sends is read and dropped before closing:
# closing with unread data resets the connection, and the client may never see the answer.
LINGER_SECONDS = 2.0

_open_connections = 0


def open_connections() -> int:
    """How many HTTP connections this process has open."""
    return _open_connections


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    # Seconds from a request's first byte (a new connection's opening) to its last: 408 after
    # (0: no limit).
    request_timeout: float = 30.0
    # Open connections of the process; one more is answered 503 and closed (0: no limit).
    max_connections: int = 10_000


class OneWriteProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits = ConnectionLimits(),  # frozen: one shared default is safe
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        # When the request being received began (None: none is); a timer checks it.
        self._request_since: float | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        global _open_connections
        _open_connections += 1
        super().connection_made(GatheringTransport(transport, self.loop))  # type: ignore[arg-type]
        limits = self._limits
        if limits.max_connections and _open_connections > limits.max_connections:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        if limits.request_timeout:
            self._request_since = self.loop.time()
            self._deadline = self.loop.call_later(limits.request_timeout, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        global _open_connections
        _open_connections -= 1
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    # The request hooks below run for every request: they add as little as they can (an extra
    # Python call per request costs a click ~0.1-0.2 µs).

    def on_url(self, url: bytes) -> None:
        if self._request_since is None:  # else the connection's first request, timed since open
            self._request_since = self.loop.time()
        self.url += url
        if len(self.url) > MAX_TARGET_BYTES:
            self._refused = True
            raise TargetTooLong  # stops the parser; uvicorn then calls send_400_response

    def on_headers_complete(self) -> None:
        if len(self.url) <= _PARSE_URL_MAX:
            HttpToolsProtocol.on_headers_complete(self)  # cheaper than super() on the hot path
            return
        # Split a long target here; the path alone goes through uvicorn's parsing.
        path, _, query = self.url.partition(b"?")
        if len(path) > _PARSE_URL_MAX:
            self._refused = True
            raise TargetTooLong
        self.url = path
        super().on_headers_complete()
        # uvicorn's request task has not run yet and reads this same scope.
        self.scope["query_string"] = query.partition(b"#")[0]

    def on_message_complete(self) -> None:
        self._request_since = None
        # uvicorn's on_message_complete, inline rather than through super(): one call less.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG)
        else:
            super().send_400_response(msg)

    def _check_deadline(self) -> None:
        """Answer 408 once a request has taken the timeout to arrive; else check again later."""
        timeout = self._limits.request_timeout
        since = self._request_since
        now = self.loop.time()
        if since is None or self.flow.read_paused:  # idle, or not read by us: not its fault
            cycle = self.cycle
            if (
                since is None
                and self.timeout_keep_alive_task is None
                and (cycle is None or cycle.response_complete)
            ):
                # Idle with nothing to close it: bytes that came after the answer (the rest of
                # a body, the first bytes of a request before its URL) stopped uvicorn's
                # keep-alive timer. The request is timed from now.
                self._request_since = now
            self._deadline = self.loop.call_later(timeout, self._check_deadline)
        elif now - since < timeout:
            self._deadline = self.loop.call_later(since + timeout - now, self._check_deadline)
        else:
            self._deadline = None
            self._refuse(HTTPStatus.REQUEST_TIMEOUT)

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer `status` (unless this request's answer has begun) and close after lingering."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app has this (or, pipelined, the previous) request: it sees a disconnect and
            # writes nothing more.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        body = status.phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status.value, body, len(body), body)
        )
        self.transport.set_protocol(Lingering(self, self.transport, self.loop))


class TargetTooLong(Exception):
    """A request target over MAX_TARGET_BYTES (raised inside the parser's callback)."""


class Lingering(asyncio.Protocol):
    """A refused connection: what still arrives is dropped; it closes at EOF or after a while."""

    def __init__(
        self, owner: asyncio.Protocol, transport: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._owner = owner
        self._timer = loop.call_later(LINGER_SECONDS, transport.close)
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._owner.connection_lost(exc)


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
