"""tools/pick-python: the interpreter `make` builds .venv with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "pick-python"


def pick(*candidates: str) -> str:
    done = subprocess.run(["sh", str(SCRIPT), *candidates], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def interpreter(tmp_path: Path, name: str, version: tuple[int, int]) -> str:
    """A stand-in interpreter that reports `version` to the script's probe (this Python runs it
    with sys.version_info replaced, so ensurepip and venv are really imported)."""
    path = tmp_path / name
    patch = f"import sys; sys.version_info = {version!r}; exec(sys.argv.pop(1))"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{patch}" "$2"\n')
    path.chmod(0o755)
    return str(path)


def test_the_first_candidate_that_will_do_wins(tmp_path: Path) -> None:
    old = interpreter(tmp_path, "old", (3, 10))
    good = interpreter(tmp_path, "good", (3, 11))
    newer = interpreter(tmp_path, "newer", (3, 13))
    assert pick(old, good, newer) == good
    assert pick(newer, good) == newer
    assert pick(str(tmp_path / "missing"), good) == good


def test_without_one_it_falls_back_to_python3(tmp_path: Path) -> None:
    """make then runs `python3 -m venv`, whose own error says what is missing."""
    assert pick(interpreter(tmp_path, "old", (3, 9)), str(tmp_path / "missing")) == "python3"


def test_by_default_it_names_a_python_that_can_make_the_venv() -> None:
    chosen = pick()
    probe = "import ensurepip, sys, venv; print(sys.version_info >= (3, 11))"
    done = subprocess.run([chosen, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
