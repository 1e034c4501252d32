"""Studies: baseline candidates, staged and per-setting profile jobs, re-measured figures.

- ``candidates.role`` (``candidate`` | ``baseline``; existing rows are candidates),
  ``candidates.label`` (a human name: the baseline's genome file stem) and
  ``candidates.export_error`` (why its deployment file could not be written).
- ``jobs.stage`` (``screen`` | ``confirm``; NULL for jobs made by hand), ``jobs.flash_attn``
  (the llama.cpp flash-attention setting the job pins; NULL: the agent's default, off) and
  ``jobs.dedupe_key`` (unique: the search's "one job per candidate x device class x stage x
  setting", so two engines can never enqueue the same job twice).
- ``measurements.tries`` (how many times the agent measured this context before it kept the
  figure; existing rows: 1) and ``measurements.conditions`` (the machine's state before the run:
  load, steal, other processes' CPU, how long the agent waited for quiet).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False,
                                      server_default="candidate"))
        batch_op.add_column(sa.Column("label", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("export_error", sa.Text(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("flash_attn", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint("uq_jobs_dedupe_key", ["dedupe_key"])
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("conditions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_column("conditions")
        batch_op.drop_column("tries")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_jobs_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("flash_attn")
        batch_op.drop_column("stage")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_column("export_error")
        batch_op.drop_column("label")
        batch_op.drop_column("role")
