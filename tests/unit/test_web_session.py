"""The admin session key file: made once per data directory, private, then reused."""

from __future__ import annotations

import stat
from pathlib import Path

from clickloop.http.webcore import SECRET_FILE, load_secret, safe_next


def test_session_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    """The first call writes a 0600 key file; later calls read the same key back."""
    data_dir = tmp_path / "data"
    first = load_secret(data_dir)
    assert len(first) == 64
    assert stat.S_IMODE((data_dir / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(data_dir) == first
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE]


def test_next_stays_inside_the_admin() -> None:
    """Only admin-relative paths survive as `next`; other hosts and schemes become the root."""
    assert safe_next("/campaigns?days=7") == "/campaigns?days=7"
    for hostile in ("//evil.example/", "https://evil.example/", "/\\\\evil.example", "", None):
        assert safe_next(hostile) == "/"
