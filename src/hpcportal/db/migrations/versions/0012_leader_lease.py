"""One leader among replicas: the lease row and its fencing token.

``leader_lease`` holds one row per lease name (``"leader"``): who holds it, until when
(milliseconds since the epoch, an integer so that every engine compares it exactly),
and ``token``, which grows by one at every takeover. Background writes check the token
in their own transaction (``ha.lease.fence``), so a leader that was paused past its
lease cannot write after another replica took over. Each replica also keeps a row of
its own (``replica:<id>``) alive while it runs: its heartbeat.

``submissions.owner`` names the replica running a submission's attempt, so that a
retry on another replica takes over an attempt whose replica died as soon as that
replica's heartbeat ends, instead of waiting for the attempt's time limit.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_lease")),
    )
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("owner")
    op.drop_table("leader_lease")
