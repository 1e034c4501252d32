"""One repository contract, every backend: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from star.db import Database
from star.db.store import ArtifactStore
from tests.factories import database_url, drop_database, migrated_database

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    url = database_url(backend, tmp_path)
    database = migrated_database(url)
    yield database
    database.dispose()
    drop_database(url)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")
