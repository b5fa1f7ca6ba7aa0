"""The server protocol counts its open connections (the group-commit writer's "everyone in")."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from clickloop.http.protocol import OneWriteProtocol, open_connections


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 5 s")


def test_connections_are_counted_while_open() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> list[int]:
        config = uvicorn.Config(
            _app, host="127.0.0.1", port=port, http=OneWriteProtocol, lifespan="off",
            log_level="warning",
        )  # fmt: skip
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        await _until(lambda: server.started)
        base = open_connections()
        seen = []
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await _until(lambda: open_connections() == base + 3)
        seen.append(open_connections() - base)
        reader, writer = clients[0]
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 204")
        seen.append(open_connections() - base)  # keep-alive: still open after an answer
        for _, writer in clients[:2]:
            writer.close()
        await _until(lambda: open_connections() == base + 1)
        seen.append(open_connections() - base)
        clients[2][1].close()
        await _until(lambda: open_connections() == base)
        server.should_exit = True
        await serving
        return seen

    assert asyncio.run(scenario()) == [3, 3, 1]
