"""Which deployment files belong to which candidates: ``candidate_artifacts``.

An artifact is content-addressed (one row per sha256), so the same genome exported with the same
seed in two runs is one artifact shared by two candidates; ``artifacts.candidate_id`` can name
only the first. The link table names every candidate a file belongs to (back-filled from
``artifacts.candidate_id``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_artifacts",
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidates.id"], ondelete="CASCADE",
                                name="fk_candidate_artifacts_candidate_id_candidates"),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE",
                                name="fk_candidate_artifacts_artifact_id_artifacts"),
        sa.PrimaryKeyConstraint("candidate_id", "artifact_id", name="pk_candidate_artifacts"),
    )
    op.create_index("ix_candidate_artifacts_artifact_id", "candidate_artifacts",
                    ["artifact_id"])
    op.execute("INSERT INTO candidate_artifacts (candidate_id, artifact_id) "
               "SELECT candidate_id, id FROM artifacts WHERE candidate_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_candidate_artifacts_artifact_id", table_name="candidate_artifacts")
    op.drop_table("candidate_artifacts")
