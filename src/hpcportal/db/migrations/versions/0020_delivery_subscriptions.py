"""A person's delivery choices (issue 15.2): subscriptions, channel options (rate
limit, wrong verification codes) and messages held for digests, quiet hours or the
rate limit.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "mode IN ('immediate', 'hourly', 'daily')", name=op.f("ck_delivery_subscriptions_mode")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["delivery_channels.id"],
            name=op.f("fk_delivery_subscriptions_channel_id_delivery_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_subscriptions")),
        sa.UniqueConstraint("channel_id", "event", name="uq_delivery_subscriptions_channel_event"),
    )
    op.create_index(
        "ix_delivery_subscriptions_owner_event", "delivery_subscriptions", ["owner", "event"]
    )

    op.create_table(
        "delivery_channel_options",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("rate_limit_per_hour", sa.Integer(), nullable=True),
        sa.Column("verify_failures", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["delivery_channels.id"],
            name=op.f("fk_delivery_channel_options_channel_id_delivery_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_delivery_channel_options")),
    )

    op.create_table(
        "delivery_held",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("period_key", sa.String(length=64), nullable=False),
        sa.Column("release_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IN ('digest', 'quiet', 'rate')", name=op.f("ck_delivery_held_reason")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["delivery_channels.id"],
            name=op.f("fk_delivery_held_channel_id_delivery_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_held")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_delivery_held_idempotency_key")),
    )
    op.create_index(op.f("ix_delivery_held_channel_id"), "delivery_held", ["channel_id"])
    op.create_index(
        "ix_delivery_held_folded_at_release_at", "delivery_held", ["folded_at", "release_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_held_folded_at_release_at", table_name="delivery_held")
    op.drop_index(op.f("ix_delivery_held_channel_id"), table_name="delivery_held")
    op.drop_table("delivery_held")
    op.drop_table("delivery_channel_options")
    op.drop_index("ix_delivery_subscriptions_owner_event", table_name="delivery_subscriptions")
    op.drop_table("delivery_subscriptions")
