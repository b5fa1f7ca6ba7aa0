"""Settings come from CLICKLOOP_* variables and an optional TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickloop.errors import ConfigError
from clickloop.settings import Settings, load_settings


def test_defaults_use_sqlite_in_the_data_dir() -> None:
    """With nothing set, clickloop runs on SQLite under ./data."""
    settings = load_settings({})
    assert settings == Settings()
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("data/clickloop.db")


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    """A variable overrides the same key in the config file."""
    config = tmp_path / "clickloop.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nembedded_worker = false\n')
    settings = load_settings({"CLICKLOOP_CONFIG": str(config), "CLICKLOOP_PORT": "9100"})
    assert (settings.port, settings.host, settings.embedded_worker) == (9100, "0.0.0.0", False)
    assert settings.base_url == "http://127.0.0.1:9100"


@pytest.mark.parametrize(
    "environ",
    [
        {"CLICKLOOP_PORT": "eighty"},
        {"CLICKLOOP_WORKERS": "-1"},
        {"CLICKLOOP_EMBEDDED_WORKER": "maybe"},
        {"CLICKLOOP_CONFIG": "/nonexistent/clickloop.toml"},
    ],
)
def test_bad_values_are_config_errors(environ: dict[str, str]) -> None:
    """Garbage settings fail with a message naming the setting, not a traceback."""
    with pytest.raises(ConfigError):
        load_settings(environ)


def test_unknown_file_keys_are_rejected(tmp_path: Path) -> None:
    """A typo in the config file is reported rather than ignored."""
    config = tmp_path / "c.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings({"CLICKLOOP_CONFIG": str(config)})
