"""Interactive app sessions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interactive_sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("app_name", sa.String(200), nullable=False),
        sa.Column("connection", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("session_dir", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("view_secret", sa.Text(), nullable=True),
        sa.Column("passwd_file", sa.Text(), nullable=True),
        sa.Column("share_token_hash", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactive_sessions")),
        sa.UniqueConstraint(
            "share_token_hash", name=op.f("uq_interactive_sessions_share_token_hash")
        ),
    )
    op.create_index(
        "ix_interactive_sessions_username_state",
        "interactive_sessions",
        ["username", "state"],
    )
    op.create_index(op.f("ix_interactive_sessions_job_id"), "interactive_sessions", ["job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_interactive_sessions_job_id"), table_name="interactive_sessions")
    op.drop_index("ix_interactive_sessions_username_state", table_name="interactive_sessions")
    op.drop_table("interactive_sessions")
