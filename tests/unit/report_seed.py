"""Rows for the report-kind tests: usage-store rollups and jobs as the ingester
writes them, with every summed column set (zero unless a test names it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hpcportal.db.report_tables import USAGE_SUMS, UsageDaily, UsageHourly, UsageJob
from hpcportal.services.reports.document import Period
from hpcportal.services.reports.spec import ReportSpec

NOVEMBER = Period(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 12, 1, tzinfo=UTC))
OCTOBER = Period(start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2026, 11, 1, tzinfo=UTC))


def at(day: int, month: int = 11, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def rollup(session: Session, period_start: datetime, user: str, account: str,
           partition: str, *, hourly: bool = False, **sums: Any) -> None:  # fmt: skip
    table = UsageHourly if hourly else UsageDaily
    values = {name: 0 for name in USAGE_SUMS} | sums
    session.add(table(period_start=period_start, user=user, account=account,
                      partition=partition, qos="normal", size_bucket="1", **values))  # fmt: skip


def job(session: Session, job_id: int, user: str, account: str, partition: str,
        end: datetime, *, elapsed: int, started: bool = True, gpus: int = 0,
        cpus: int = 1) -> None:  # fmt: skip
    session.add(UsageJob(
        cluster="hpcdev", job_id=job_id, display_id=str(job_id), user=user, account=account,
        partition=partition, qos="normal", state="COMPLETED" if started else "CANCELLED",
        start_time=end - timedelta(seconds=elapsed) if started else None, end_time=end,
        cpus=cpus, gpus=gpus,
        memory_mb=1000, node_count=1, elapsed_seconds=elapsed, time_limit_minutes=60,
        cpu_time_seconds=0.0, size_bucket="1", ingested_at=end,
    ))  # fmt: skip


def spec(kind: str, language: str = "en", **extra: Any) -> ReportSpec:
    return ReportSpec.model_validate({
        "kind": kind, "language": language,
        "period": NOVEMBER.model_dump(mode="json"), **extra,
    })  # fmt: skip
