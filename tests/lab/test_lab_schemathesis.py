"""schemathesis over the coordinator's OpenAPI schema: no input, however odd, gives a 5xx.

Every operation gets generated requests (positive and negative) with the right kind of token,
against a seeded database. Bounded: a few examples per operation, about 30 s in all.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings

from star.db.store import ArtifactStore
from star.lab import create_app
from tests.factories import (
    ADMIN_TOKEN,
    database_url,
    make_artifact,
    make_device,
    make_job,
    make_settings,
    migrated_database,
)

EXAMPLES = 12


def test_no_server_errors(tmp_path: Path) -> None:
    url = database_url("sqlite", tmp_path)
    db = migrated_database(url)
    # no engines: a generated body that is a valid SearchConfig must not start a search
    lab_settings = make_settings(tmp_path, url, engines=False)
    device, device_token = make_device(db, "fuzz", tags=["a"])
    art = make_artifact(db, ArtifactStore(lab_settings.store_dir), b"GGUF-fuzz")
    make_job(db, art.id)
    app = create_app(lab_settings, db=db)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    failures: list[str] = []
    statuses: dict[int, int] = {}
    tokens: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        token = device_token if "/agent/" in operation.path else ADMIN_TOKEN
        tokens[operation.path] = f"Bearer {token}"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            auth = {"Authorization": case.operation.path and tokens[case.operation.path]}
            response = case.call(headers={**(case.headers or {}), **auth})
            statuses[response.status_code // 100] = statuses.get(response.status_code // 100, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:300]}")  # fmt: skip

        check()
    assert failures == [], "\n".join(failures[:20])
    assert statuses.get(2, 0) > 50 and statuses.get(4, 0) > 50, statuses  # both paths exercised
    db.dispose()
