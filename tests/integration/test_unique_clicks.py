"""Which clicks the writer marks unique (docs/reports.md, "Unique clicks"): a visitor (IP and
user agent) counts once per campaign in 24 hours, within a batch and across batches, again once
the 24 hours have passed; another campaign or another user agent is another visitor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.visitors import enrich_click
from clickloop.storage import report_cubes
from clickloop.storage import tables as t
from clickloop.storage.writer import GroupCommitWriter

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"


def write(engine: Engine, batches: list[list[dict[str, Any]]]) -> None:
    """Each list of rows in one writer batch (the server's writer, with its report hook)."""

    async def run() -> None:
        writer = GroupCommitWriter(engine, before_insert=report_cubes.add_clicks)
        writer.start()
        try:
            for rows in batches:
                await asyncio.gather(*(writer.insert(t.clicks, r, enrich_click) for r in rows))
        finally:
            await writer.stop()

    asyncio.run(run())


def campaigns(engine: Engine) -> tuple[int, int]:
    offer = entities.create_offer(engine, name="Offer", url="https://offer.test/", now=START)
    first, second = (
        entities.create_campaign(engine, name=name, alias=name, now=START, offers=[(offer, 1)])
        for name in ("first", "second")
    )
    return first, second


def click(subid: str, campaign: int, minutes: float, *, ip: str = "10.0.0.1", agent: str = CHROME):
    return {
        "subid": subid,
        "created_at": START + timedelta(minutes=minutes),
        "campaign_id": campaign,
        "ip": ip,
        "user_agent": agent,
    }


def unique(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.clicks.c.subid, t.clicks.c.is_unique)).all()
    return {subid: bool(flag) for subid, flag in rows}


def test_a_visitor_counts_once_per_campaign_in_24_hours(engine: Engine) -> None:
    first, second = campaigns(engine)
    write(
        engine,
        [
            # One batch: the earliest of the visitor's clicks is the unique one, whatever order
            # they come in.
            [click("b", first, 5), click("a", first, 0), click("c", first, 10, agent=IPHONE)],
            # Later batches: seen within 24 hours, or not.
            [click("d", first, 60), click("e", second, 61), click("f", first, 62, ip="10.0.0.2")],
            [click("g", first, 24 * 60 - 1)],
            [click("h", first, 2 * 24 * 60)],
            [click("i", first, 2 * 24 * 60 + 30)],
        ],
    )
    assert unique(engine) == {
        "a": True,
        "b": False,
        "c": True,  # another user agent: another visitor
        "d": False,
        "e": True,  # another campaign
        "f": True,  # another address
        "g": False,  # 23 h 59 min after the first
        "h": True,  # more than 24 hours after the visitor's last click (g)
        "i": False,
    }


def test_a_click_older_than_the_visitors_last_is_not_unique(engine: Engine) -> None:
    """A batch whose clicks are older than the last one `click_visitors` holds (another server
    process with a clock ahead) leaves it as it is, and none of them counts as unique, however
    long before it they came."""
    first, _ = campaigns(engine)
    write(
        engine, [[click("late", first, 3 * 24 * 60)], [click("x", first, 60), click("y", first, 0)]]
    )
    write(engine, [[click("z", first, 3 * 24 * 60 + 1)]])
    assert unique(engine) == {"late": True, "x": False, "y": False, "z": False}
