"""The usage store of reports (issue 14.1): finished jobs, hourly and daily rollups,
and the ingest cursor per cluster.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=False),
        sa.Column("qos", sa.String(length=64), nullable=False),
        sa.Column("size_bucket", sa.String(length=16), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("cpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("memory_mb_seconds", sa.BigInteger(), nullable=False),
        sa.Column("wait_seconds", sa.BigInteger(), nullable=False),
        sa.Column("wall_seconds", sa.BigInteger(), nullable=False),
        sa.Column("requested_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cpu_time_seconds", sa.Float(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("timed_out", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("other", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_daily")),
        sa.UniqueConstraint(
            "period_start",
            "user",
            "account",
            "partition",
            "qos",
            "size_bucket",
            name="uq_usage_daily_key",
        ),
    )
    op.create_table(
        "usage_hourly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=False),
        sa.Column("qos", sa.String(length=64), nullable=False),
        sa.Column("size_bucket", sa.String(length=16), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("cpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("memory_mb_seconds", sa.BigInteger(), nullable=False),
        sa.Column("wait_seconds", sa.BigInteger(), nullable=False),
        sa.Column("wall_seconds", sa.BigInteger(), nullable=False),
        sa.Column("requested_seconds", sa.BigInteger(), nullable=False),
        sa.Column("cpu_time_seconds", sa.Float(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("timed_out", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("other", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_hourly")),
        sa.UniqueConstraint(
            "period_start",
            "user",
            "account",
            "partition",
            "qos",
            "size_bucket",
            name="uq_usage_hourly_key",
        ),
    )
    op.create_table(
        "usage_ingest_cursors",
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("ingested_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("slurm_release", sa.String(length=32), nullable=True),
        sa.Column("last_jobs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cluster", name=op.f("pk_usage_ingest_cursors")),
    )
    op.create_table(
        "usage_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("display_id", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=False),
        sa.Column("qos", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("submit_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("eligible_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.BigInteger(), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("elapsed_seconds", sa.BigInteger(), nullable=False),
        sa.Column("time_limit_minutes", sa.Integer(), nullable=True),
        sa.Column("cpu_time_seconds", sa.Float(), nullable=False),
        sa.Column("size_bucket", sa.String(length=16), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_jobs")),
        sa.UniqueConstraint("cluster", "job_id", name="uq_usage_jobs_cluster_job"),
    )
    op.create_index("ix_usage_jobs_end_time", "usage_jobs", ["end_time"], unique=False)
    op.create_index("ix_usage_jobs_user_end_time", "usage_jobs", ["user", "end_time"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_usage_jobs_user_end_time", table_name="usage_jobs")
    op.drop_index("ix_usage_jobs_end_time", table_name="usage_jobs")
    op.drop_table("usage_jobs")
    op.drop_table("usage_ingest_cursors")
    op.drop_table("usage_hourly")
    op.drop_table("usage_daily")
