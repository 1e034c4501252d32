"""A run's lifecycle in typed columns (it lived in ``runs.config`` JSON before).

``runs.status`` (``RunStatus``: running, suspended, stopped, done, failed; NULL for runs the
search did not create), ``status_reason``, ``owner`` (the engine driving it, ``host:pid:nonce``),
``driver`` (``cli`` | ``coordinator``), ``heartbeat_at`` (database clock) and
``stop_requested``. Existing runs are moved over: their JSON keys ``status``,
``status_reason``, ``stop_requested``, ``heartbeat_at`` and ``engine`` become the columns and
leave the JSON; a run stopped because its coordinator shut down becomes ``suspended`` (what the
old code recognised by its reason string). Downgrade moves them back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SHUTDOWN = "coordinator shut down"
KEYS = ("status", "status_reason", "stop_requested", "heartbeat_at", "engine")


def _runs() -> sa.TableClause:
    return sa.table(
        "runs", sa.column("id", sa.Integer), sa.column("config", sa.JSON),
        sa.column("status", sa.String), sa.column("status_reason", sa.Text),
        sa.column("owner", sa.String), sa.column("driver", sa.String),
        sa.column("heartbeat_at", sa.DateTime), sa.column("stop_requested", sa.Boolean),
    )


def _doc(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("owner", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("driver", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("stop_requested", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    conn = op.get_bind()
    runs = _runs()
    for run_id, raw in conn.execute(sa.select(runs.c.id, runs.c.config)).all():
        doc = _doc(raw)
        if not any(k in doc for k in KEYS):
            continue
        status, reason = doc.get("status"), doc.get("status_reason")
        if status == "stopped" and reason == SHUTDOWN:
            status = "suspended"
        engine = doc.get("engine") or {}
        beat = doc.get("heartbeat_at")
        conn.execute(runs.update().where(runs.c.id == run_id).values(
            status=status, status_reason=reason, owner=engine.get("owner"),
            driver=engine.get("driver"),
            heartbeat_at=datetime.fromisoformat(beat).replace(tzinfo=None) if beat else None,
            stop_requested=bool(doc.get("stop_requested")),
            config={k: v for k, v in doc.items() if k not in KEYS},
        ))


def downgrade() -> None:
    conn = op.get_bind()
    runs = _runs()
    rows = conn.execute(sa.select(runs.c.id, runs.c.config, runs.c.status,
                                  runs.c.status_reason, runs.c.owner, runs.c.driver,
                                  runs.c.heartbeat_at, runs.c.stop_requested)).all()
    for run_id, raw, status, reason, owner, driver, beat, stop in rows:
        if status is None:
            continue
        doc = _doc(raw)
        doc.update(status="stopped" if status == "suspended" else status, status_reason=reason,
                   stop_requested=bool(stop),
                   heartbeat_at=beat.isoformat() if beat is not None else None,
                   engine={"owner": owner, "driver": driver})
        conn.execute(runs.update().where(runs.c.id == run_id).values(config=doc))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name in ("stop_requested", "heartbeat_at", "driver", "owner", "status_reason",
                     "status"):
            batch_op.drop_column(name)
