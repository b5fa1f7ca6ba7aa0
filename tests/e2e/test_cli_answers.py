"""The command line answers bad situations with one line and a non-zero status, never a
traceback: a closed pipe, a missing database, a rates server that answers garbage."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
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
