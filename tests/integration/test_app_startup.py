"""The server's start-up, run in-process on the test database."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from sqlalchemy.engine import Engine

from clickloop.http.app import create_app
from clickloop.settings import Settings


def test_startup_freezes_what_it_loaded_out_of_the_collectors_sight(
    engine: Engine, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path), engine)

    async def start_and_stop() -> int:
        await app.startup()
        try:
            return gc.get_freeze_count()
        finally:
            await app.shutdown()

    gc.unfreeze()
    try:
        frozen = asyncio.run(start_and_stop())
    finally:
        gc.unfreeze()
    # GeoIP's ranges alone are tens of thousands of objects.
    assert frozen > 20_000
