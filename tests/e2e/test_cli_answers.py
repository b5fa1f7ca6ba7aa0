"""The command line answers bad situations with one line and a non-zero status, never a
traceback: a closed pipe, a missing database, a rates server that answers garbage."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import http_endpoint

pytestmark = pytest.mark.slow


def clickloop(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLICKLOOP_DATA_DIR": str(data_dir)}
    env.pop("CLICKLOOP_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "clickloop.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def ready(tmp_path: Path) -> Path:
    """An initialised SQLite data directory."""
    data = tmp_path / "data"
    assert clickloop("init", data_dir=data).returncode == 0
    return data


def test_version() -> None:
    """`--version` names the installed version."""
    answer = clickloop("--version", data_dir=Path("unused"))
    assert answer.returncode == 0
    assert answer.stdout.startswith("clickloop ")


def test_a_reader_that_leaves_early_gets_no_traceback(ready: Path) -> None:
    """`clickloop templates list | head -1`: the command stops quietly when the pipe closes."""
    read_end, write_end = os.pipe()
    # A one-page pipe: the listing cannot fit, so the command is still writing when we leave.
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    process = subprocess.Popen(
        [sys.executable, "-m", "clickloop.cli", "templates", "list"],
        env={**os.environ, "CLICKLOOP_DATA_DIR": str(ready)},
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.readline()
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert process.wait(30) == 1
    assert stderr == ""


def test_a_missing_database_is_not_created_by_reading(tmp_path: Path) -> None:
    """`campaigns list` on a data directory that does not exist says so and creates nothing."""
    data = tmp_path / "nothing-here"
    answer = clickloop("campaigns", "list", data_dir=data)
    assert answer.returncode == 1
    assert answer.stderr.startswith("error: no database at ")
    assert "clickloop init" in answer.stderr
    assert not data.exists()


def test_a_database_behind_this_version_is_upgraded_first(ready: Path, tmp_path: Path) -> None:
    """A new version installed over a database of the previous one: `serve` and the commands
    refuse in one line naming `clickloop db upgrade` (the code would meet tables it does not
    know), `backup` still copies it, and after the upgrade everything runs."""
    from alembic import command

    from clickloop.storage.db import alembic_config, behind_by, make_engine

    engine = make_engine(f"sqlite:///{ready / 'clickloop.db'}")
    assert behind_by(engine) == []
    command.downgrade(alembic_config(engine), "-1")
    assert len(behind_by(engine)) == 1
    engine.dispose()
    for args in (("serve",), ("campaigns", "list"), ("reports", "rebuild", "--daily")):
        answer = clickloop(*args, data_dir=ready)
        assert answer.returncode == 1, args
        assert answer.stderr.startswith("error: the database lacks 1 migration(s)"), answer.stderr
        assert "clickloop db upgrade" in answer.stderr
        assert "Traceback" not in answer.stderr
    assert clickloop("backup", str(tmp_path / "before.db"), data_dir=ready).returncode == 0
    assert clickloop("db", "upgrade", data_dir=ready).returncode == 0
    answer = clickloop("campaigns", "list", data_dir=ready)
    assert answer.returncode == 0, answer.stderr


@pytest.fixture
def garbage_server() -> Iterator[str]:
    with http_endpoint(lambda request: (200, b"<html>not rates</html>\nat all\n")) as base:
        yield f"{base}/eurofxref.csv"


def test_rates_update_from_a_server_that_answers_garbage(ready: Path, garbage_server: str) -> None:
    """A rates file that is not the ECB's is one line of error, and the stored rates stay."""
    before = clickloop("rates", "list", data_dir=ready).stdout
    answer = clickloop("rates", "update", "--url", garbage_server, data_dir=ready)
    assert answer.returncode == 1
    assert "Traceback" not in answer.stderr
    assert answer.stderr.startswith(f"error: {garbage_server}: not an ECB rates file")
    assert clickloop("rates", "list", data_dir=ready).stdout == before


def test_import_names_a_bad_key_and_a_second_import_changes_nothing(
    ready: Path, tmp_path: Path
) -> None:
    """`clickloop import` refuses an unknown key in one line naming it; importing the same
    file twice reports every entry unchanged; `--dry-run` writes nothing."""
    document = tmp_path / "setup.yaml"
    document.write_text(
        "offers:\n  - name: Shop\n    url: https://shop.test/\n    payout: '3.5'\n    bogus: 1\n"
    )
    refused = clickloop("import", str(document), data_dir=ready)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: offers[0] (Shop): Additional properties")
    assert "'bogus'" in refused.stderr and "Traceback" not in refused.stderr
    document.write_text(document.read_text().replace("    bogus: 1\n", ""))
    dry = clickloop("import", "--dry-run", str(document), data_dir=ready)
    assert dry.stdout.splitlines() == [
        "created offers: Shop",
        "1 created, 0 updated, 0 unchanged (dry run: nothing written)",
    ]
    assert clickloop("import", str(document), data_dir=ready).stdout.startswith("created")
    again = clickloop("import", str(document), data_dir=ready)
    assert again.stdout.splitlines() == [
        "unchanged offers: Shop",
        "0 created, 0 updated, 1 unchanged",
    ]


def test_deliveries_say_when_nothing_matches_or_nothing_was_resent(ready: Path) -> None:
    """An empty delivery list says so on stderr (stdout stays JSON lines); resending a delivery
    that does not exist says why and exits 1; a bad --since is a usage error."""
    listed = clickloop("deliveries", "list", data_dir=ready)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "no deliveries match\n")
    resent = clickloop("deliveries", "resend", "99999", data_dir=ready)
    assert resent.returncode == 1
    assert "delivery 99999: not queued" in resent.stderr
    assert resent.stdout == "requeued 0 of 1\n"
    since = clickloop("deliveries", "resend-failed", "--since", "yesterday", data_dir=ready)
    assert since.returncode == 2
    assert "not an ISO 8601 time" in since.stderr and "Traceback" not in since.stderr


# (arguments, exit status, what stderr says): every new command met with garbage, missing or
# hostile input. `world` below gives each an offer "Shop", a source "Src" and a campaign "camp".
REFUSALS = [
    (["offers", "add", "", "--url", "https://a.test/"], 1, "name: required"),
    (["offers", "add", "New"], 1, "url: required (--url)"),
    (["offers", "add", "New", "--url", "javascript:alert(1)"], 1, "url: an http(s) URL"),
    (["offers", "add", "New", "--url", "https://a.test/", "--payout", "NaN"], 1, "payout: a"),
    (["offers", "add", "New", "--url", "https://a.test/", "--currency", "dollars"], 1, "currency"),
    (["offers", "add", "New", "--url", "https://a.test/", "--network", "Nope"], 1, "not found"),
    (["offers", "add", "Shop", "--url", "https://a.test/"], 1, "offer already exists: Shop"),
    (["offers", "add", "Sh\x00op", "--url", "https://a.test/"], 2, "control characters"),
    (["offers", "add", "New", "--url", "https://a.test/", "--upsell", "maybe"], 2, "choice"),
    (["offers", "show", "Nope"], 1, "offer not found: Nope"),
    (["offers", "edit", "Nope", "--payout", "1"], 1, "offer not found: Nope"),
    (["offers", "edit", "Shop"], 1, "give at least one field"),
    (["offers", "edit", "Shop", "--url", "https://x.test/?k=***"], 1, "where a secret was masked"),
    (["offers", "remove", "99999999999999999999"], 1, "not found"),
    (["offers", "remove", "Shop"], 1, "used by campaigns"),
    (["offers", "list", "--format", "xml"], 2, "invalid choice"),
    (["campaigns", "add", "C", "--alias", "admin"], 1, "alias: 1-64 letters"),
    (["campaigns", "add", "C"], 1, "alias: required (--alias)"),
    (["campaigns", "add", "C", "--alias", "c", "--offer", "Shop:heavy"], 1, "offers.weight"),
    (["campaigns", "add", "C", "--alias", "c", "--offer", "Shop:99999"], 1, "offers.weight"),
    (["campaigns", "add", "C", "--alias", "c", "--offer", "Shop:²"], 1, "offers.weight"),
    (["campaigns", "show", "²"], 1, "campaign not found: ²"),
    (["campaigns", "add", "C", "--alias", "c", "--offer", "Nope"], 1, "offer not found: Nope"),
    (["campaigns", "add", "C", "--alias", "c", "--cost-model", "free"], 1, "cost_model: one of"),
    (["campaigns", "add", "C", "--alias", "c", "--cost", "1e999"], 1, "cost_value"),
    (["campaigns", "add", "C", "--alias", "c", "--status", "gone"], 2, "invalid choice"),
    (["campaigns", "add", "C", "--alias", "c", "--postback", "ftp://x"], 1, "postbacks.url"),
    (["campaigns", "add", "C", "--alias", "camp"], 1, "campaign already exists: camp"),
    (["campaigns", "link", "Nope"], 1, "campaign not found: Nope"),
    (["campaigns", "pause", "Nope"], 1, "campaign not found: Nope"),
    (["campaigns", "remove", "camp"], 1, "used by clicks (pause it instead)"),
    (["traffic-sources", "add", "S", "--parameter", "bad"], 1, "FIELD:PARAM[:MACRO]"),
    (["traffic-sources", "add", "S", "--parameter", "sub_id_99:x"], 1, "sub_id_1 to sub_id_30"),
    (["traffic-sources", "add", "S", "--postback-method", "PUT"], 1, "GET or POST"),
    (["traffic-sources", "add", "S", "--postback-statuses", "s@le"], 1, "not a valid name"),
    (["traffic-sources", "remove", "Src"], 1, "used by campaigns"),
    (["affiliate-networks", "add", "N", "--training", "nosign"], 1, "TYPE=WORD,WORD"),
    (["affiliate-networks", "add", "N", "--allowed-ip", "999.1.1.1"], 1, "not an address"),
    (["affiliate-networks", "show", "1e3"], 1, "not found: 1e3"),
    (["settings", "set", "postback_key", "x"], 2, "invalid choice"),
    (["settings", "set", "timezone", "Mars/Base"], 1, "not a known IANA time zone"),
    (["settings", "set", "allowed_networks", "[1,"], 1, "allowed_networks: not valid JSON"),
    (["settings", "set", "allowed_networks", "10.0.0.0/33"], 1, "not an address or network"),
    (["settings", "set", "aliases", "novalue"], 1, "NAME=VALUE pairs"),
    (["settings", "set", "aliases", '{"clickid": ["x"]}'], 1, "aliases"),
    (["settings", "set", "status_trainings", '["sale"]'], 1, "status_trainings"),
    (["settings", "set", "s2s_disable_after_hours", "0"], 1, "from 1 to 8760"),
    (["settings", "set", "s2s_disable_after_hours", "soon"], 1, "from 1 to 8760"),
    (["settings", "set", "s2s_disable_after_hours", "²"], 1, "from 1 to 8760"),
    (["settings", "set", "ignored_answer_status", "500"], 1, "one of 200"),
    (["settings", "set", "currency", "US Dollar"], 1, "three-letter"),
    (["settings", "set", "currency"], 2, "required"),
    (["clicks", "list", "--limit", "0"], 2, "a whole number from 1"),
    (["clicks", "list", "--since", "yesterday"], 2, "not an ISO 8601 time"),
    (["clicks", "list", "--campaign", "Nope"], 1, "campaign not found: Nope"),
    (["clicks", "show", "nope"], 1, "click not found: nope"),
    (["conversions", "list", "--until", "soon"], 2, "not an ISO 8601 time"),
    (["conversions", "show", "0"], 2, "not an id"),
    (["conversions", "show", "٣"], 2, "not an id"),
    (["conversions", "show", "12"], 1, "conversion not found: 12"),
    (["postbacks", "list", "--outcome", "maybe"], 2, "invalid choice"),
    (["postbacks", "list", "--reason", "\x1b[2J"], 2, "control characters"),
    (["backup", "/no/such/dir/x.db"], 1, "/no/such/dir is not a directory"),
    (["restore", "/no/such/backup"], 1, "cannot read /no/such/backup"),
    (["restore", "/etc/hostname"], 1, "is not a clickloop backup"),
]


@pytest.fixture(scope="module")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised data directory with an offer, a source, a campaign using both, and a
    click of it (made once; each test gets a copy)."""
    from clickloop.services import entities
    from clickloop.storage.db import make_engine
    from clickloop.storage.tables import clicks

    data = tmp_path_factory.mktemp("world") / "data"
    assert clickloop("init", data_dir=data).returncode == 0
    engine = make_engine(f"sqlite:///{data / 'clickloop.db'}")
    now = datetime.now(UTC)
    offer = entities.create_offer(engine, name="Shop", url="https://shop.test/", now=now)
    source = entities.create_traffic_source(engine, name="Src", now=now)
    campaign = entities.create_campaign(
        engine, name="Camp", alias="camp", traffic_source_id=source, offers=[(offer, 1)], now=now
    )
    with engine.begin() as conn:
        conn.execute(clicks.insert().values(subid="s1", created_at=now, campaign_id=campaign))
    engine.dispose()
    return data


@pytest.fixture
def world(world_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of `world_template` that the commands in this process use."""
    data = tmp_path / "data"
    shutil.copytree(world_template, data)
    monkeypatch.setenv("CLICKLOOP_DATA_DIR", str(data))
    monkeypatch.delenv("CLICKLOOP_DATABASE_URL", raising=False)
    return data


@pytest.mark.parametrize(("args", "status", "says"), REFUSALS, ids=lambda v: repr(v)[:60])
def test_new_commands_refuse_bad_input_in_one_line(
    world: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int, says: str
) -> None:
    """Each entity, settings, list and backup command answers bad input with its reason and
    a non-zero status: one `error:` line (1), or argparse's usage and error (2); no traceback,
    nothing on stdout."""
    from clickloop.cli import main

    try:
        answered = main(args)
    except SystemExit as exit:
        answered = int(exit.code or 0)
    out, err = capsys.readouterr()
    assert answered == status, err
    assert says in err and "Traceback" not in err and out == ""
    lines = err.splitlines()
    if status == 1:
        assert len(lines) == 1 and lines[0].startswith("error: ")
    else:
        assert lines[0].startswith("usage: clickloop ") and ": error: " in lines[-1]


def test_restore_refuses_a_database_that_has_data(world: Path, tmp_path: Path) -> None:
    """`restore` never writes over a database: an existing one is refused, named."""
    backup = tmp_path / "copy.db"
    assert clickloop("backup", str(backup), data_dir=world).returncode == 0
    again = clickloop("backup", str(backup), data_dir=world)
    assert (again.returncode, "exists: a backup never overwrites" in again.stderr) == (1, True)
    restored = clickloop("restore", str(backup), data_dir=world)
    assert restored.returncode == 1
    assert restored.stderr == (
        f"error: {world / 'clickloop.db'} exists: restore into another data directory or URL\n"
    )
