"""Notifications about disk alerts, and per-user disk alert targets.

A notification can now be about a disk target instead of a job: ``kind`` (``job``
for every existing row), ``job_id`` may be NULL, and ``target`` + ``episode`` with
the unique key (username, target, episode, event) make each disk alert stored once
across replicas. ``disk_alerts`` gains ``episode`` (counts a target's alert
episodes) and ``username`` (a user's own quota or file-area target).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), server_default="job", nullable=False))
        batch.add_column(sa.Column("target", sa.String(255), nullable=True))
        batch.add_column(sa.Column("episode", sa.Integer(), nullable=True))
        batch.alter_column("job_id", existing_type=sa.String(64), nullable=True)
        batch.create_unique_constraint(
            "uq_notifications_username_target_episode_event",
            ["username", "target", "episode", "event"],
        )

    with op.batch_alter_table("disk_alerts") as batch:
        batch.add_column(sa.Column("username", sa.String(32), nullable=True))
        batch.add_column(sa.Column("episode", sa.Integer(), server_default="0", nullable=False))
        batch.create_index(op.f("ix_disk_alerts_username"), ["username"])


def downgrade() -> None:
    with op.batch_alter_table("disk_alerts") as batch:
        batch.drop_index(op.f("ix_disk_alerts_username"))
        batch.drop_column("episode")
        batch.drop_column("username")

    op.execute("DELETE FROM notifications WHERE kind <> 'job'")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notifications_username_target_episode_event", type_="unique")
        batch.alter_column("job_id", existing_type=sa.String(64), nullable=False)
        batch.drop_column("episode")
        batch.drop_column("target")
        batch.drop_column("kind")
