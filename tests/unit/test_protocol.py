"""The server protocol's transport: what one turn of the event loop writes goes out once."""

from __future__ import annotations

import asyncio

from clickloop.http.protocol import GatheringTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _next_turn() -> None:
    await asyncio.sleep(0)


def test_head_and_body_written_in_one_turn_go_out_as_one_write() -> None:
    async def scenario() -> list[list[bytes]]:
        real = RecordingTransport()
        gathering = GatheringTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        gathering.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        gathering.write(b"")
        gathering.write(b"OK")
        before = list(real.writes)
        await _next_turn()
        after_first = list(real.writes)
        gathering.write(b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n")
        await _next_turn()
        return [before, after_first, real.writes]

    before, after_first, after_second = asyncio.run(scenario())
    assert before == []
    assert after_first == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK"]
    assert after_second[1:] == [b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n"]


def test_close_sends_what_is_held_first_and_a_closed_peer_gets_nothing() -> None:
    async def scenario() -> tuple[RecordingTransport, RecordingTransport]:
        loop = asyncio.get_running_loop()
        closing = RecordingTransport()
        gathering = GatheringTransport(closing, loop)  # type: ignore[arg-type]
        gathering.write(b"last answer")
        gathering.close()
        gone = RecordingTransport()
        left = GatheringTransport(gone, loop)  # type: ignore[arg-type]
        left.write(b"too late")
        gone.closed = True  # the peer hung up before the loop's next turn
        await _next_turn()
        await _next_turn()
        return closing, gone

    closing, gone = asyncio.run(scenario())
    assert closing.writes == [b"last answer"] and closing.closed
    assert gone.writes == []


def test_everything_else_is_the_real_transports() -> None:
    async def scenario() -> tuple[str, bool]:
        real = RecordingTransport()
        gathering = GatheringTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        real.closed = True
        return gathering.get_extra_info("peername"), gathering.is_closing()

    assert asyncio.run(scenario()) == ("info:peername", True)
