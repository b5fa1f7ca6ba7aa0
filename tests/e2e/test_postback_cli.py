"""The postback commands of the installed CLI: import conversions, reprocess, rates, types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clickloop.services import entities
from clickloop.storage import tables as t
from tests.postback_world import World, add_clicks, make_world


@pytest.fixture
def world(engine: Engine) -> World:
    world = make_world(engine)
    add_clicks(engine, world, ["k1", "k2"], offer_id=world.plain_offer_id)
    return world


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Any:
    env = {
        **os.environ,
        "CLICKLOOP_DATABASE_URL": database_url,
        "CLICKLOOP_DATA_DIR": str(tmp_path),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clickloop.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_import_then_train_then_reprocess(
    world: World, engine: Engine, cli: Any, tmp_path: Path
) -> None:
    """Imported lines report per line; an unknown status is fixed by a custom type and re-run."""
    data = tmp_path / "conversions.csv"
    data.write_text("subid,payout,tid,status\nk1,10,,sale\nk2,5,,gold\nzz,1,,sale\n")
    imported = cli("import", "conversions", str(data))
    assert imported.stderr == "3 lines imported: 2 ignored, 1 accepted\n"  # no bar in a pipe
    report = lines(imported)
    assert [(r["line"], r["outcome"], r["reason"]) for r in report] == [
        (2, "accepted", ""),
        (3, "ignored", "unknown status gold"),
        (4, "ignored", "subid not found: zz"),
    ]
    added = cli("conversion-types", "add", "vip", "--label", "VIP")
    assert added.returncode == 0, added.stderr
    assert cli("conversion-types", "add", "vip").returncode == 1
    names = [row["name"] for row in lines(cli("conversion-types", "list"))]
    assert names[-1] == "vip"
    # train gold → vip through the global trainings setting, then re-run the ignored ones of
    # one click, then everything still ignored
    entities.update_settings(engine, {"status_trainings": {"vip": ["gold"]}})
    rerun = lines(cli("postbacks", "reprocess", "--all-ignored", "--subid", "k2"))
    assert [(r["id"], r["outcome"]) for r in rerun] == [(2, "accepted")]
    rerun = lines(cli("postbacks", "reprocess", "--all-ignored"))
    assert [(r["id"], r["outcome"]) for r in rerun] == [(3, "ignored")]
    with engine.connect() as conn:
        types = dict(conn.execute(select(t.conversions.c.subid, t.conversions.c.type)).all())
    assert types == {"k1": "sale", "k2": "vip"}
    single = cli("postbacks", "reprocess", "2")
    assert single.returncode == 1 and "not an ignored one" in single.stderr
    assert cli("postbacks", "reprocess").returncode == 1


def test_rates_commands(world: World, cli: Any) -> None:
    """Rates can be set by hand, stored from the bundled ECB file and listed with sources."""
    assert cli("rates", "set", "rub", "95.5").stdout.strip() == "1 EUR = 95.5 RUB"
    assert cli("rates", "set", "RUB", "-1").returncode == 1
    stored = cli("rates", "update", "--offline")
    assert stored.returncode == 0 and stored.stdout.startswith("stored ")
    rows = [json.loads(line) for line in cli("rates", "list").stdout.splitlines()]
    listed = {row["currency"]: row for row in rows}
    assert (listed["RUB"]["per_eur"], listed["RUB"]["source"]) == ("95.5", "manual")
    assert listed["USD"]["source"] == "ecb"


def test_import_usage_errors(world: World, cli: Any, tmp_path: Path) -> None:
    """A missing file or a wrong sub-form is an error with exit code 1."""
    assert cli("import", "conversions", str(tmp_path / "missing.csv")).returncode == 1
    assert cli("import", "other", str(tmp_path / "x.csv")).returncode == 1
