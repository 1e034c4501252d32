"""schemathesis over the coordinator's whole OpenAPI schema: no input, however odd, gives a 5xx,
and every status the API answers is one its schema documents.

Every operation gets generated requests, positive (valid by the schema) and negative (not),
each with the admin token and with a device token, against a seeded database (SQLite here;
PostgreSQL in the slow variant, whose int4 ids and NUL-refusing text are stricter). The checks
are schemathesis's own: not a server error, status code and content type documented, response
body valid against its schema, negative data rejected. Bounded: a few examples per operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from star.db.store import ArtifactStore
from star.lab import create_app
from tests.factories import (
    ADMIN_TOKEN,
    database_url,
    drop_database,
    make_artifact,
    make_device,
    make_job,
    make_settings,
    migrated_database,
)

EXAMPLES = 8  # per operation, token and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
DEVICE = "fuzz-device-7f3a"  # a name the generator will not hit (retiring it ends the run)


@dataclass
class Tally:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def line(self, backend: str) -> str:
        return (f"schemathesis ({backend}): {self.operations} operations x 2 tokens x 2 modes, "
                f"{self.cases} cases, statuses {dict(sorted(self.statuses.items()))}, "
                f"{len(self.failures)} failures")


def fuzz(backend: str, tmp_path: Path) -> Tally:
    url = database_url(backend, tmp_path)
    db = migrated_database(url)
    # no engines: a generated body that is a valid SearchConfig must not start a search
    lab_settings = make_settings(tmp_path, url, engines=False)
    _, device_token = make_device(db, DEVICE, tags=["a"])
    art = make_artifact(db, ArtifactStore(lab_settings.store_dir), b"GGUF-fuzz")
    make_job(db, art.id)
    app = create_app(lab_settings, db=db)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    tally.operations = len(operations)
    for operation in operations:
        for token in (ADMIN_TOKEN, device_token):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_one(operation, token, mode, tally)
    db.dispose()
    drop_database(url)
    return tally


def _fuzz_one(operation: schemathesis.APIOperation, token: str, mode: GenerationMode,
              tally: Tally) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(headers=headers)
        tally.cases += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as exc:
            role = "admin" if token == ADMIN_TOKEN else "device"
            tally.failures.append(f"{case.method} {case.formatted_path} ({role}, {mode.value}): "
                                  f"{response.status_code} {str(exc)[:400]}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (an operation without any input)
        assert mode is GenerationMode.NEGATIVE


def _assert_clean(tally: Tally, backend: str) -> None:
    print(tally.line(backend))
    assert tally.failures == [], "\n".join(tally.failures[:20])
    assert tally.operations >= 29  # the whole API: every router's operations
    two_xx = sum(n for code, n in tally.statuses.items() if 200 <= code < 300)
    four_xx = sum(n for code, n in tally.statuses.items() if 400 <= code < 500)
    assert two_xx > 50 and four_xx > 50, tally.statuses  # both paths exercised
    assert {401, 403, 422} <= set(tally.statuses), tally.statuses  # both tokens exercised


def test_no_server_error_and_no_undocumented_status_on_sqlite(tmp_path: Path) -> None:
    _assert_clean(fuzz("sqlite", tmp_path), "sqlite")


@pytest.mark.slow
def test_no_server_error_and_no_undocumented_status_on_postgresql(tmp_path: Path) -> None:
    _assert_clean(fuzz("postgresql", tmp_path), "postgresql")
