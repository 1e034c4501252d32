"""The runtime of each job (``jobs.runtime``): llama.cpp for a GGUF, executorch for a .pte.

Leases match it against the runtimes a device advertises, so an agent without ExecuTorch is
never handed a .pte. Existing jobs are back-filled from their artifact's format.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("runtime", sa.String(16), nullable=False,
                                   server_default="llama.cpp"))
    op.execute("UPDATE jobs SET runtime = 'executorch' WHERE artifact_id IN "
               "(SELECT id FROM artifacts WHERE format = 'pte')")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("runtime")
