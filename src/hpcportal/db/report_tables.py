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
