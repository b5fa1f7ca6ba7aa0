"""Liveness and readiness probes of a running server."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow


def test_healthz_and_readyz_answer_on_a_working_server(server: Server) -> None:
    """/healthz says the process serves; /readyz that the database commits through every
    writer; neither says anything else."""
    for path, body in (("/healthz", b"ok"), ("/readyz", b"ready")):
        with urllib.request.urlopen(f"{server.base_url}{path}", timeout=10) as answer:
            assert answer.status == 200
            assert answer.read() == body
