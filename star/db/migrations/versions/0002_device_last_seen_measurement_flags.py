"""Device liveness (last_seen_at) and measurement quality flags (flagged_hot, flagged_noisy).

Existing measurements are back-filled as not flagged; existing devices as never seen.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flagged_hot", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("flagged_noisy", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_column("flagged_noisy")
        batch_op.drop_column("flagged_hot")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
