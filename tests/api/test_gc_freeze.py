"""The server's worker processes freeze the start-up objects out of the garbage collector's
full collections (app.create_app(freeze_gc=True)); apps made elsewhere (tests) do not."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings


def _frozen_after_startup(tmp_path, freeze: bool) -> int:
    gc.unfreeze()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", export_worker=False), freeze_gc=freeze)
    try:
        with TestClient(app) as client:
            assert client.get("/fhir/metadata").status_code == 200
            return gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_server_workers_freeze_the_startup_objects(tmp_path):
    assert _frozen_after_startup(tmp_path, True) > 10_000  # modules, models, tables, the app


def test_other_apps_do_not(tmp_path):
    assert _frozen_after_startup(tmp_path, False) == 0
