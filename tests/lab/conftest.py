"""A live coordinator (uvicorn in a thread on a free loopback port) and httpx clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from star.config import LabSettings
from star.db import Database
from star.db.store import ArtifactStore
from tests.factories import (
    ThreadServer,
    admin_headers,
    api,
    bearer,
    database_url,
    drop_database,
    make_settings,
    migrated_database,
)


@dataclass
class Lab:
    url: str
    settings: LabSettings
    db: Database
    store: ArtifactStore
    admin: httpx.Client
    app: Any = None  # the FastAPI app served (its state: supervisor, settings)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = bearer(token) if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def register(self, name: str, kind: str = "x86", **extra: Any) -> str:
        r = self.admin.post(api("/devices"), json={"name": name, "kind": kind, **extra})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def upload(self, payload: bytes) -> dict[str, Any]:
        r = self.admin.post(
            api("/artifacts"),
            params={"quant": "f32"},
            content=payload,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, artifact_id: int, **body: Any) -> dict[str, Any]:
        body = {"artifact_id": artifact_id, "contexts": [128, 256], "device_kind": "x86", **body}
        r = self.admin.post(api("/jobs"), json=body)
        assert r.status_code == 201, r.text
        return r.json()


def start_lab(tmp_path: Path, backend: str = "sqlite", **server: Any) -> Iterator[Lab]:
    url = database_url(backend, tmp_path)
    db = migrated_database(url)
    settings = make_settings(tmp_path, url, **server)
    with ThreadServer(settings) as srv:
        admin = httpx.Client(base_url=srv.url, headers=admin_headers(), timeout=30)
        yield Lab(srv.url, settings, db, ArtifactStore(settings.store_dir), admin, srv.app)
        admin.close()
    db.dispose()
    drop_database(url)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path)
