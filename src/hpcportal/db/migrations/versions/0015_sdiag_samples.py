"""Scheduler statistics sampled on the leader (``sdiag``), for the admin console (issue 16).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sdiag_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sdiag_samples")),
    )
    op.create_index(op.f("ix_sdiag_samples_at"), "sdiag_samples", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sdiag_samples_at"), table_name="sdiag_samples")
    op.drop_table("sdiag_samples")
