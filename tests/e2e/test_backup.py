"""`clickloop backup` while clicks and postbacks flow, and `clickloop restore` of it into a fresh
database: the restored tracker reports what the live one did up to the backup, row for row."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.services.reports import build_report
from clickloop.storage import tables as t
from clickloop.storage.db import make_engine
from tests.conftest import PG_ENV, Server, _pg_admin, _pg_url_for
from tests.e2e.test_clicks import make_campaign, request, wait_for_link

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as the test's, for the restore."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'clickloop.db'}"
        return
    name = f"clickloop_restore_{secrets.token_hex(4)}"
    with _pg_admin(os.environ[PG_ENV]) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url_for(os.environ[PG_ENV], name)
    with _pg_admin(os.environ[PG_ENV]) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def click_and_convert(server: Server, alias: str, key: str, n: int) -> None:
    """One click (with a CPC cost) and its sale postback."""
    status, headers, _ = request(server, "GET", f"/{alias}?clickid={alias}{n}&cost=0.01")
    assert status == 302
    subid = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["sub1"][0]
    postback = f"/{key}/postback?subid={subid}&status=sale&payout=2.5&tid=t{n}"
    assert request(server, "GET", postback)[0] == 200


def report(engine: Engine, campaign_id: int) -> list[dict[str, object]]:
    today = datetime.now(UTC).date()
    built = build_report(
        engine,
        group_by="campaign",
        date_from=today - timedelta(days=1),
        date_to=today + timedelta(days=1),
        timezone="UTC",
        currency="USD",
        campaign_id=campaign_id,
    )
    return [asdict(row) for row in [*built.rows, built.totals]]


def rows(engine: Engine, table: t.Table, campaign_id: int) -> dict[object, dict[str, object]]:
    key = table.c.subid if table is t.clicks else table.c.id
    with engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.campaign_id == campaign_id))
        return {row._mapping[key.name]: dict(row._mapping) for row in found}


def test_a_backup_under_load_restores_to_identical_reports(
    server: Server, engine: Engine, fresh_url: str, tmp_path: Path
) -> None:
    """Clicks and postbacks keep flowing while `backup` runs; restored into an empty database,
    the campaign finished before the backup reports exactly as the live one, and of the one
    running during it the copy holds a prefix whose rows equal the live ones."""
    before, during = make_campaign(engine, "before"), make_campaign(engine, "during")
    wait_for_link(server, "before")
    wait_for_link(server, "during")
    key = entities.get_settings(engine)["postback_key"]
    for n in range(20):
        click_and_convert(server, "before", key, n)

    flowing, stop = threading.Event(), threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            click_and_convert(server, "during", key, n)
            n += 1
            if n == 10:
                flowing.set()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        assert flowing.wait(30)
        backup = tmp_path / "clickloop.backup"
        taken = server.cli("backup", str(backup))
        # The load goes on a little after the backup, so the copy is a strict prefix.
        for _ in range(5):
            assert worker.is_alive()
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(30)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith(f"backup written: {backup}")

    restore_env = {**server.env, "CLICKLOOP_DATABASE_URL": fresh_url}
    restore_env["CLICKLOOP_DATA_DIR"] = str(tmp_path / "restored")
    restored = subprocess.run(
        [sys.executable, "-m", "clickloop.cli", "restore", str(backup)],
        env=restore_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restored.returncode == 0, restored.stderr
    copy = make_engine(fresh_url)
    try:
        assert report(copy, before) == report(engine, before)
        assert report(copy, before)[-1]["clicks"] == 20
        for table in (t.clicks, t.conversions):
            live, kept = rows(engine, table, during), rows(copy, table, during)
            assert 10 <= len(kept) < len(live)
            assert all(live[key] == row for key, row in kept.items())
        assert entities.get_settings(copy)["postback_key"] == key
    finally:
        copy.dispose()


def test_without_pg_dump_the_backup_says_what_to_install(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """On PostgreSQL with no pg_dump on the PATH, `backup` names the package, in one line."""
    if database_url.startswith("sqlite"):
        pytest.skip("pg_dump: PostgreSQL only")
    done = subprocess.run(
        [sys.executable, "-m", "clickloop.cli", "backup", str(tmp_path / "x.dump")],
        env={**os.environ, "PATH": str(tmp_path), "CLICKLOOP_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: pg_dump is not installed: install the PostgreSQL")
    assert len(done.stderr.splitlines()) == 1 and not (tmp_path / "x.dump").exists()
