"""Minimal ASGI response senders for the hot path (no framework objects per request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

NO_STORE = (b"cache-control", b"no-store")
TEXT = (b"content-type", b"text/plain; charset=utf-8")
HTML = (b"content-type", b"text/html; charset=utf-8")


async def send_response(
    send: Send, status: int, body: bytes = b"", headers: Headers = (), *, head: bool = False
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_text(
    send: Send, status: int, text: str, headers: Headers = (), *, head: bool = False
) -> None:
    await send_response(send, status, text.encode(), [TEXT, NO_STORE, *headers], head=head)


def header(scope: Scope, name: bytes) -> str:
    """The first value of a request header, decoded leniently ('' when absent)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1").replace("\x00", "")
    return ""
