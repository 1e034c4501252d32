"""Migrations: upgrade an empty database and one at the previous revision; the models match the
head revision; start-up refuses an out-of-date schema and names `star db upgrade`."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from star.db import Database, SchemaOutOfDateError, require_current_schema, upgrade
from star.db.migrate import current_revision, downgrade, head_revision
from star.db.models import Base
from tests.factories import database_url, make_settings


def test_head_is_the_sixth_revision() -> None:
    assert head_revision() == "0006"


def test_upgrade_an_empty_database(backend: str, tmp_path: Path) -> None:
    db = Database(database_url(backend, tmp_path))
    assert current_revision(db.engine) is None
    assert upgrade(db) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"devices", "runs", "generations", "candidates", "artifacts", "jobs"} <= tables
    assert "measurements" in tables
    with db.engine.connect() as conn:  # the models match the head revision exactly
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert upgrade(db) == head_revision()  # idempotent
    db.dispose()


def test_upgrade_from_the_previous_revision_keeps_data(backend: str, tmp_path: Path) -> None:
    db = Database(database_url(backend, tmp_path))
    upgrade(db, "0001")
    assert current_revision(db.engine) == "0001"
    columns = {c["name"] for c in inspect(db.engine).get_columns("measurements")}
    assert "flagged_hot" not in columns
    with db.engine.begin() as conn:  # rows written by the old schema
        conn.execute(
            text(
                "INSERT INTO devices (name, kind, tags, token_hash, properties, status, created_at)"
                " VALUES ('old', 'x86', '[]', 'h', '{}', 'offline', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO artifacts (format, quant, sha256, size_bytes, path, created_at)"
                " VALUES ('gguf', 'f32', :sha, 1, 'x', CURRENT_TIMESTAMP)"
            ),
            {"sha": "a" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (kind, state, artifact_id, device_tags, contexts, repetitions,"
                " n_gen, priority, attempts, max_attempts, created_at)"
                " VALUES ('profile', 'done', 1, '[]', '[128]', 1, 1, 0, 0, 3, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO measurements (job_id, artifact_id, device_id, context, oom, runtime,"
                " created_at) VALUES (1, 1, 1, 128, false, '{}', CURRENT_TIMESTAMP)"
            )
        )
    assert upgrade(db, "0002") == "0002"
    with db.engine.connect() as conn:
        flags = conn.execute(text("SELECT flagged_hot, flagged_noisy FROM measurements")).one()
        seen = conn.execute(text("SELECT name, last_seen_at FROM devices")).one()
    assert tuple(bool(f) for f in flags) == (False, False)
    assert seen == ("old", None)
    assert downgrade(db, "0001") == "0001"  # and back down
    assert "last_seen_at" not in {c["name"] for c in inspect(db.engine).get_columns("devices")}
    db.dispose()


def test_startup_refuses_an_out_of_date_schema(backend: str, tmp_path: Path) -> None:
    from star.lab import create_app

    url = database_url(backend, tmp_path)
    db = Database(url)
    with pytest.raises(SchemaOutOfDateError, match="star db upgrade"):
        require_current_schema(db.engine)  # empty
    upgrade(db, "0001")
    with pytest.raises(SchemaOutOfDateError, match=r"revision 0001.*`star db upgrade`"):
        create_app(make_settings(tmp_path, url))
    upgrade(db)
    assert create_app(make_settings(tmp_path, url)).state.schema_revision == head_revision()
    db.dispose()


def test_upgrade_to_studies_keeps_candidates_jobs_and_measurements(backend: str,
                                                                   tmp_path: Path) -> None:
    """0002 -> 0003: old candidates become role 'candidate', old measurements 1 try, old jobs
    no stage; the new unique dedupe key refuses a second search job with the same key."""
    from sqlalchemy.exc import IntegrityError

    db = Database(database_url(backend, tmp_path))
    upgrade(db, "0002")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (name, config, created_at) VALUES "
                          "('r', '{}', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO candidates (run_id, genome, genome_hash, created_at) "
                          "VALUES (1, '{}', :h, CURRENT_TIMESTAMP)"), {"h": "b" * 64})
        conn.execute(text("INSERT INTO devices (name, kind, tags, token_hash, properties, status,"
                          " created_at) VALUES ('d', 'x86', '[]', 'h', '{}', 'offline', "
                          "CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO artifacts (format, quant, sha256, size_bytes, path, "
                          "created_at) VALUES ('gguf', 'f32', :sha, 1, 'x', CURRENT_TIMESTAMP)"),
                     {"sha": "a" * 64})
        conn.execute(text("INSERT INTO jobs (kind, state, artifact_id, device_tags, contexts, "
                          "repetitions, n_gen, priority, attempts, max_attempts, created_at) "
                          "VALUES ('profile', 'done', 1, '[]', '[128]', 1, 1, 0, 0, 3, "
                          "CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO measurements (job_id, artifact_id, device_id, context, "
                          "oom, runtime, created_at, flagged_hot, flagged_noisy) VALUES "
                          "(1, 1, 1, 128, false, '{}', CURRENT_TIMESTAMP, false, false)"))
    assert upgrade(db, "0003") == "0003"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT role, label FROM candidates")).one() == ("candidate",
                                                                                  None)
        assert conn.execute(text("SELECT stage, flash_attn, dedupe_key FROM jobs")).one() == (
            None, None, None)
        assert conn.execute(text("SELECT tries, conditions FROM measurements")).one() == (1, None)
    insert = text("INSERT INTO jobs (kind, state, artifact_id, device_tags, contexts, "
                  "repetitions, n_gen, priority, attempts, max_attempts, created_at, dedupe_key)"
                  " VALUES ('profile', 'queued', 1, '[]', '[128]', 1, 1, 0, 0, 3, "
                  "CURRENT_TIMESTAMP, 'c1/x86/screen/fa0')")
    with db.engine.begin() as conn:
        conn.execute(insert)
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(insert)
    assert downgrade(db, "0002") == "0002"
    assert "role" not in {c["name"] for c in inspect(db.engine).get_columns("candidates")}
    db.dispose()


def test_upgrade_moves_the_run_lifecycle_out_of_json(backend: str, tmp_path: Path) -> None:
    """0003 -> 0004: a database made by the previous release keeps every run's status, owner,
    heartbeat and stop request, now as columns; a run stopped by its coordinator's shutdown
    becomes suspended (what the old code read from its reason string); other JSON stays."""
    import json

    from star.db.models import RunStatus
    from star.db.repo import get_run_by_name

    db = Database(database_url(backend, tmp_path))
    upgrade(db, "0003")
    old = {
        "shut": {"search": {"name": "shut"}, "genomes": {"base": None}, "status": "stopped",
                 "status_reason": "coordinator shut down", "stop_requested": False,
                 "heartbeat_at": "2026-12-01T10:00:00.123456",
                 "engine": {"owner": "h:12:ab", "driver": "coordinator"}},
        "halt": {"search": {"name": "halt"}, "status": "running", "stop_requested": True,
                 "heartbeat_at": "2026-12-01T11:00:00", "engine": {"owner": "h:13:cd",
                                                                    "driver": "cli"}},
        "plain": {"note": "not a search run"},
    }
    with db.engine.begin() as conn:
        for name, doc in old.items():
            conn.execute(text("INSERT INTO runs (name, config, created_at) VALUES "
                              "(:n, :c, CURRENT_TIMESTAMP)"), {"n": name, "c": json.dumps(doc)})
    assert upgrade(db, "0004") == "0004"
    with db.session_scope(readonly=True) as s:
        shut, halt, plain = (get_run_by_name(s, n) for n in ("shut", "halt", "plain"))
    assert (shut.status, shut.status_reason) == (RunStatus.SUSPENDED, "coordinator shut down")
    assert (shut.owner, shut.driver, shut.stop_requested) == ("h:12:ab", "coordinator", False)
    assert shut.heartbeat_at is not None and shut.heartbeat_at.isoformat().startswith(
        "2026-12-01T10:00:00.123456")
    assert shut.config == {"search": {"name": "shut"}, "genomes": {"base": None}}
    assert (halt.status, halt.stop_requested, halt.driver) == (RunStatus.RUNNING, True, "cli")
    assert plain.status is None and plain.config == {"note": "not a search run"}
    assert downgrade(db, "0003") == "0003"  # and back: the JSON form again
    with db.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, config FROM runs")).all())
    doc = rows["shut"] if isinstance(rows["shut"], dict) else json.loads(rows["shut"])
    assert doc["status"] == "stopped" and doc["engine"]["owner"] == "h:12:ab"
    db.dispose()


def test_upgrade_to_job_runtime_backfills_from_the_artifact_format(backend: str,
                                                                   tmp_path: Path) -> None:
    """0005 -> 0006: a job of a GGUF becomes a llama.cpp job, a job of a .pte an executorch
    job; down again drops the column."""
    db = Database(database_url(backend, tmp_path))
    upgrade(db, "0005")
    with db.engine.begin() as conn:
        for i, fmt in enumerate(("gguf", "pte"), start=1):
            conn.execute(text("INSERT INTO artifacts (format, quant, sha256, size_bytes, path, "
                              "created_at) VALUES (:f, 'f32', :sha, 1, 'x', CURRENT_TIMESTAMP)"),
                         {"f": fmt, "sha": str(i) * 64})
            conn.execute(text("INSERT INTO jobs (kind, state, artifact_id, device_tags, contexts,"
                              " repetitions, n_gen, priority, attempts, max_attempts, created_at)"
                              " VALUES ('profile', 'queued', :a, '[]', '[128]', 1, 1, 0, 0, 3, "
                              "CURRENT_TIMESTAMP)"), {"a": i})
    assert upgrade(db, "0006") == "0006"
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT artifact_id, runtime FROM jobs ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "llama.cpp"), (2, "executorch")]
    assert downgrade(db, "0005") == "0005"
    assert "runtime" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    db.dispose()
