"""Tables of the report area: the usage store, generated reports and their schedules.

Kept apart so ``models.py`` stays short; ``models.py`` imports this module, which
registers the tables on the shared metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from hpcportal.db.base import Base, UtcDateTime

# --- Generated reports and their schedules (services/reports/generation, schedules) ---
#: POSIX user names are at most 32 characters (as ``models.USERNAME_MAX_LENGTH``).
_REPORT_OWNER = 32
REPORT_STATES = ("queued", "running", "done", "failed")
SCHEDULE_FREQUENCIES = ("daily", "weekly", "monthly")
#: A rendered file lives in the database: every replica can serve every download and
#: none keeps state on its disk. MariaDB's plain BLOB stops at 64 KiB, hence LONGBLOB.
_FILE_BLOB = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class ReportSchedule(Base):
    """A report generated again every day, week or month, for the period just ended.

    ``time_of_day`` ("HH:MM") is read in ``time_zone`` (an IANA name): a weekly report
    runs on Monday at that local time for the week before, a monthly one on the first.
    ``next_run_at`` (UTC) is when the leader looks next; ``last_period_key`` the newest
    period it produced a report for (``report_schedule_runs`` is what makes it once).
    """

    __tablename__ = "report_schedules"
    __table_args__ = (
        CheckConstraint("frequency IN ('daily', 'weekly', 'monthly')", name="frequency"),
        Index("ix_report_schedules_enabled_next_run_at", "enabled", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(_REPORT_OWNER), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    formats: Mapped[list[str]] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    frequency: Mapped[str] = mapped_column(String(16))
    time_of_day: Mapped[str] = mapped_column(String(5))
    time_zone: Mapped[str] = mapped_column(String(64))
    next_run_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_period_key: Mapped[str | None] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReportScheduleRun(Base):
    """One schedule's one period, inserted by the leader in a fenced session before it
    queues the period's reports: the unique (schedule, period) pair is what keeps a
    period to one run across leader changes and replicas. ``fencing_token`` says which
    leader term ran it."""

    __tablename__ = "report_schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "period_key", name="uq_report_schedule_runs_period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("report_schedules.id", ondelete="CASCADE"))
    period_key: Mapped[str] = mapped_column(String(32))
    fencing_token: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class GeneratedReport(Base):
    """One report of one format: asked for on demand or by a schedule.

    ``state``: ``queued`` -> ``running`` (claimed by a replica, ``claimed_by`` and
    ``claimed_at`` say which and when, so a crashed claim is taken again) -> ``done``
    (``file`` holds the rendered bytes, ``document`` the built ReportDocument so the
    other formats render without asking the usage store again) or ``failed``
    (``error``). Deleted by the leader after ``expires_at``.
    """

    __tablename__ = "generated_reports"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
        Index("ix_generated_reports_owner_created_at", "owner", "created_at"),
        Index("ix_generated_reports_state_created_at", "state", "created_at"),
        Index("ix_generated_reports_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(_REPORT_OWNER))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    title: Mapped[str] = mapped_column(String(300), default="", server_default="")
    state: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    file: Mapped[bytes | None] = mapped_column(_FILE_BLOB)
    size: Mapped[int | None] = mapped_column(BigInteger)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("report_schedules.id", ondelete="SET NULL"), index=True
    )
    period_key: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- The usage store (services/reports/ingest.py writes, services/reports/usage.py reads) ---
#: Slurm names (accounts, partitions, QoS) are short; sacct cuts nothing, so give room.
_SLURM_NAME = 64
#: Job-size buckets by allocated CPUs (``services.reports.buckets``), e.g. "2-4".
_BUCKET = 16
#: Job states as sacct writes them ("CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL").
_STATE = 32


class UsageJob(Base):
    """One finished job as the ingester read it from ``sacct``: the dedupe key of the
    usage store. (cluster, job_id) is unique, so a window read twice, or re-read after a
    crash, inserts nothing it already has; the rollups are only ever added to with the
    rows this insert really added. Missing account/partition/QoS are stored as ''
    (as in the rollups, whose unique key must not hold NULLs)."""

    __tablename__ = "usage_jobs"
    __table_args__ = (
        UniqueConstraint("cluster", "job_id", name="uq_usage_jobs_cluster_job"),
        Index("ix_usage_jobs_end_time", "end_time"),
        Index("ix_usage_jobs_user_end_time", "user", "end_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster: Mapped[str] = mapped_column(String(_SLURM_NAME))
    #: Slurm's numeric job id (an array task has its own); ``display_id`` is "12_3".
    job_id: Mapped[int] = mapped_column(BigInteger)
    display_id: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(_REPORT_OWNER))
    account: Mapped[str] = mapped_column(String(_SLURM_NAME))
    partition: Mapped[str] = mapped_column(String(_SLURM_NAME))
    qos: Mapped[str] = mapped_column(String(_SLURM_NAME))
    state: Mapped[str] = mapped_column(String(_STATE))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    submit_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    eligible_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime] = mapped_column(UtcDateTime)
    cpus: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(BigInteger)
    node_count: Mapped[int] = mapped_column(Integer)
    elapsed_seconds: Mapped[int] = mapped_column(BigInteger)
    time_limit_minutes: Mapped[int | None] = mapped_column(Integer)
    cpu_time_seconds: Mapped[float] = mapped_column(Float)
    size_bucket: Mapped[str] = mapped_column(String(_BUCKET))
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime)


class _UsageRollup:
    """The columns of an hourly or daily rollup: one row per (period start, user,
    account, partition, QoS, size bucket) holding the sums of the jobs that *ended* in
    that period. Resources are exact integers (CPU-seconds, GPU-seconds, MB-seconds);
    hours are computed when read. Wait and requested time count started jobs only
    (``started``), so their means are per started job."""

    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    user: Mapped[str] = mapped_column(String(_REPORT_OWNER))
    account: Mapped[str] = mapped_column(String(_SLURM_NAME))
    partition: Mapped[str] = mapped_column(String(_SLURM_NAME))
    qos: Mapped[str] = mapped_column(String(_SLURM_NAME))
    size_bucket: Mapped[str] = mapped_column(String(_BUCKET))
    jobs: Mapped[int] = mapped_column(Integer)
    started: Mapped[int] = mapped_column(Integer)
    cpu_seconds: Mapped[int] = mapped_column(BigInteger)
    gpu_seconds: Mapped[int] = mapped_column(BigInteger)
    memory_mb_seconds: Mapped[int] = mapped_column(BigInteger)
    wait_seconds: Mapped[int] = mapped_column(BigInteger)
    wall_seconds: Mapped[int] = mapped_column(BigInteger)
    requested_seconds: Mapped[int] = mapped_column(BigInteger)
    cpu_time_seconds: Mapped[float] = mapped_column(Float)
    completed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    timed_out: Mapped[int] = mapped_column(Integer)
    cancelled: Mapped[int] = mapped_column(Integer)
    other: Mapped[int] = mapped_column(Integer)


#: The rollup key, in the order of the unique constraint.
USAGE_KEY = ("period_start", "user", "account", "partition", "qos", "size_bucket")
#: The summed columns of a rollup row.
USAGE_SUMS = (
    "jobs",
    "started",
    "cpu_seconds",
    "gpu_seconds",
    "memory_mb_seconds",
    "wait_seconds",
    "wall_seconds",
    "requested_seconds",
    "cpu_time_seconds",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "other",
)


class UsageHourly(_UsageRollup, Base):
    """Per-hour rollup: answers periods that do not start and end on UTC midnights
    (a week in Asia/Seoul) and hourly charts."""

    __tablename__ = "usage_hourly"
    __table_args__ = (UniqueConstraint(*USAGE_KEY, name="uq_usage_hourly_key"),)


class UsageDaily(_UsageRollup, Base):
    """Per-day (UTC) rollup: answers a year in 365 rows per key."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint(*USAGE_KEY, name="uq_usage_daily_key"),)


class UsageIngestCursor(Base):
    """How far the usage store is complete, per cluster: every job that ended before
    ``ingested_until`` is in ``usage_jobs``. Moved in the same transaction as the
    window's rows. ``slurm_release`` is the release the last window was read from
    (reports print it as their source)."""

    __tablename__ = "usage_ingest_cursors"

    cluster: Mapped[str] = mapped_column(String(_SLURM_NAME), primary_key=True)
    ingested_until: Mapped[datetime] = mapped_column(UtcDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    slurm_release: Mapped[str | None] = mapped_column(String(32))
    last_jobs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
