"""`clickloop serve` with CLICKLOOP_RETENTION_DAYS prunes old raw clicks at start."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from clickloop.storage import tables as t
from tests.conftest import server_on

pytestmark = pytest.mark.slow


def test_serve_prunes_clicks_older_than_the_retention(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A click 40 days old goes soon after a server with 30 days of retention starts; a click
    of yesterday stays."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(t.clicks),
            [
                {"subid": "old", "created_at": now - timedelta(days=40), "campaign_id": 1},
                {"subid": "new", "created_at": now - timedelta(days=1), "campaign_id": 1},
            ],
        )
    server = server_on(database_url, tmp_path, {"CLICKLOOP_RETENTION_DAYS": "30"})
    server.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = set(conn.execute(select(t.clicks.c.subid)).scalars())
            if left == {"new"}:
                break
            time.sleep(0.1)
        assert left == {"new"}
    finally:
        server.stop()
