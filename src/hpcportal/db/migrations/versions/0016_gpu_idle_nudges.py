"""Jobs whose owners were told their GPUs stayed idle (issue 13.6).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gpu_idle_nudges",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("job_name", sa.String(length=200), nullable=False),
        sa.Column("nodes", sa.Text(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("peak_percent", sa.Float(), nullable=False),
        sa.Column("threshold_percent", sa.Float(), nullable=False),
        sa.Column("minutes", sa.Float(), nullable=False),
        sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_gpu_idle_nudges")),
    )
    op.create_index(op.f("ix_gpu_idle_nudges_nudged_at"), "gpu_idle_nudges", ["nudged_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_gpu_idle_nudges_nudged_at"), table_name="gpu_idle_nudges")
    op.drop_table("gpu_idle_nudges")
