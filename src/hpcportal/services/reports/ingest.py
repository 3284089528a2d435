"""The usage store's ingester: finished jobs from ``sacct`` into the portal's database.

Reports are answered from the usage store (``usage.py``), never by asking slurmdbd
again; this is what fills it. On the leader only (``lifecycle.PeriodicPart`` + ``Leader``),
every ``reports_ingest_seconds``:

1. The cursor (``usage_ingest_cursors``, per cluster) says up to when the store is
   complete; the first time it is ``reports_ingest_lookback_days`` ago.
2. From there, in windows of at most ``reports_ingest_window_minutes``, up to
   ``reports_ingest_settle_seconds`` ago (slurmdbd may record an end late), it reads the
   jobs that *ended* in the window (``SlurmAdapter.ended_jobs``; running jobs are read
   by the window they end in) starting ``settle`` seconds before the window, so a job
   whose end reached slurmdbd late is still found.
3. Each window is ONE fenced transaction: insert the jobs whose (cluster, job_id) is
   not there yet, add exactly those to the hourly and daily rollups, move the cursor.
   A crash, a lost lease or a second ingester leaves either all of it or none of it,
   and re-reading a window counts nothing twice.

A job counts in the hour (and UTC day) it ended: its jobs, hours and state together,
as XDMoD's "jobs" realm does. CPU-seconds are allocated CPUs x elapsed (sacct's
``CPUTimeRAW``), GPU-seconds allocated ``gres/gpu`` x elapsed, MB-seconds allocated
memory x elapsed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge
from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.report_tables import (
    USAGE_KEY,
    USAGE_SUMS,
    UsageDaily,
    UsageHourly,
    UsageIngestCursor,
    UsageJob,
)
from hpcportal.db.session import Database
from hpcportal.db.upsert import dialect_of
from hpcportal.ha import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.reports.buckets import size_bucket
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.models import AccountingRecord

log = logging.getLogger(__name__)

INGESTED = PromCounter(
    "hpcportal_usage_ingested_jobs", "Finished jobs added to the usage store", ["cluster"]
)
WINDOWS = PromCounter(
    "hpcportal_usage_ingest_windows", "Usage store ingest windows by outcome", ["outcome"]
)
#: Set by the leader as it stores each window; the shipped rule ``UsageStoreBehind``
#: fires when the newest value of any replica falls hours behind ``time()``.
COMPLETE_UNTIL = Gauge(
    "hpcportal_usage_store_complete_until_seconds",
    "Up to when (Unix time) the usage store holds every ended job of the cluster",
    ["cluster"],
)
#: Job ids per existence check (an IN list) and rows per executemany batch.
_CHUNK = 500
#: Windows read in one round; the rest of a backlog waits for the next round.
MAX_WINDOWS_PER_ROUND = 48


class Leader(Protocol):
    """What the ingester asks of ``ha.leadership.Leadership``."""

    def is_leader(self) -> bool: ...

    def fence(self, session: Session) -> None: ...


class EndedJobs(Protocol):
    """Where finished jobs come from: ``SlurmAdapter`` (blocking)."""

    def cluster(self) -> SlurmCluster: ...

    def ended_jobs(self, start: datetime, end: datetime) -> list[AccountingRecord]: ...


@dataclass(frozen=True)
class WindowResult:
    """One stored window: its bounds, the jobs sacct gave that ended in it (with the
    settle overlap) and how many of them were new to the store."""

    start: datetime
    end: datetime
    read: int
    added: int


def gpus_of(tres: dict[str, int]) -> int:
    """Allocated GPUs: ``gres/gpu``, or the sum of the typed ``gres/gpu:a100`` entries."""
    if "gres/gpu" in tres:
        return tres["gres/gpu"]
    return sum(v for k, v in tres.items() if k.startswith("gres/gpu:"))


def state_column(state: str) -> str:
    """Which state count a final state adds to."""
    if state == "COMPLETED":
        return "completed"
    if state in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"):
        return "failed"
    if state in ("TIMEOUT", "DEADLINE"):
        return "timed_out"
    if state == "CANCELLED":
        return "cancelled"
    return "other"


def job_row(cluster: str, r: AccountingRecord, now: datetime) -> dict[str, Any]:
    """The ``usage_jobs`` row of one finished job."""
    assert r.end_time is not None
    started = bool(r.node_names) and r.start_time is not None
    cpus = r.tres_allocated.get("cpu", r.cpus_requested if started else 0)
    return {
        "cluster": cluster,
        "job_id": r.job_id,
        "display_id": r.id[:64],
        "user": r.user[:32],
        "account": (r.account or "")[:64],
        "partition": (r.partition or "")[:64],
        "qos": (r.qos or "")[:64],
        "state": r.state[:32],
        "exit_code": r.exit_code,
        "submit_time": r.submit_time,
        "eligible_time": r.eligible_time,
        "start_time": r.start_time if started else None,
        "end_time": r.end_time,
        "cpus": cpus if started else 0,
        "gpus": gpus_of(r.tres_allocated) if started else 0,
        "memory_mb": r.tres_allocated.get("mem", 0) if started else 0,
        "node_count": r.node_count if started else 0,
        "elapsed_seconds": max(r.elapsed_seconds, 0),
        "time_limit_minutes": r.time_limit_minutes,
        "cpu_time_seconds": float(r.cpu_time_seconds or 0.0),
        "size_bucket": size_bucket(max(cpus, r.cpus_requested)),
        "ingested_at": now,
    }


def _zero() -> dict[str, int | float]:
    return dict.fromkeys(USAGE_SUMS, 0)


def rollup(
    rows: Iterable[dict[str, Any]], period: Callable[[datetime], datetime]
) -> list[dict[str, Any]]:
    """Sum job rows into rollup rows keyed by (``period(end)``, user, account,
    partition, QoS, size bucket)."""
    sums: dict[tuple[Any, ...], dict[str, int | float]] = {}
    for row in rows:
        key = (period(row["end_time"]), row["user"], row["account"], row["partition"],
               row["qos"], row["size_bucket"])  # fmt: skip
        s = sums.setdefault(key, _zero())
        elapsed = int(row["elapsed_seconds"])
        s["jobs"] += 1
        s["cpu_seconds"] += int(row["cpus"]) * elapsed
        s["gpu_seconds"] += int(row["gpus"]) * elapsed
        s["memory_mb_seconds"] += int(row["memory_mb"]) * elapsed
        s["wall_seconds"] += elapsed
        s["cpu_time_seconds"] += float(row["cpu_time_seconds"])
        s[state_column(row["state"])] += 1
        start = row["start_time"]
        if start is not None:
            s["started"] += 1
            queued_from = row["eligible_time"] or row["submit_time"] or start
            s["wait_seconds"] += max(0, int((start - queued_from).total_seconds()))
            limit = row["time_limit_minutes"]
            s["requested_seconds"] += int(limit) * 60 if limit is not None else elapsed
    return [dict(zip(USAGE_KEY, key, strict=True)) | s for key, s in sums.items()]


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), _CHUNK):
        yield rows[i : i + _CHUNK]


def add_jobs(session: Session, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert the ``rows`` not yet in ``usage_jobs``; add to the rollups exactly those,
    and return them. In the caller's transaction.

    Which rows are new is read first (by (cluster, job_id), in chunks) and the rest
    inserted in one executemany: a statement compiled once, unlike one multi-row
    VALUES per window. Another ingester inserting the same job meanwhile (only a
    deposed leader could) makes the unique key refuse it, and the whole window rolls
    back: it is read again next round, nothing counted twice."""
    added: list[dict[str, Any]] = []
    for chunk in _chunks(rows):
        cluster = chunk[0]["cluster"]
        ids = [row["job_id"] for row in chunk]
        present = set(
            session.scalars(
                select(UsageJob.job_id).where(UsageJob.cluster == cluster, UsageJob.job_id.in_(ids))
            )
        )
        new = [row for row in chunk if row["job_id"] not in present]
        if new:
            session.execute(insert(UsageJob), new)
        added += new
    for model, period in ((UsageHourly, hour_of), (UsageDaily, day_of)):
        sums = rollup(added, period)
        if sums:
            session.execute(rollup_upsert(session, model), sums)
    return added


def rollup_upsert(session: Session, model: Any) -> Any:
    """INSERT a rollup row, or add its sums to the row of the same key (executemany).

    ``db.upsert`` spells this for rows given as VALUES; here the rows come as
    executemany parameters, so the statement has no VALUES and is compiled once."""
    table = model.__table__
    if dialect_of(session) == "mysql":
        my = mysql.insert(table)
        return my.on_duplicate_key_update({c: table.c[c] + my.inserted[c] for c in USAGE_SUMS})
    lite_or_pg = (
        postgresql.insert(table) if dialect_of(session) == "postgresql" else sqlite.insert(table)
    )
    return lite_or_pg.on_conflict_do_update(
        index_elements=list(USAGE_KEY),
        set_={c: table.c[c] + lite_or_pg.excluded[c] for c in USAGE_SUMS},
    )


class UsageIngester(PeriodicPart):
    """The background part: on the leader, bring the usage store up to (almost) now."""

    loop_name = "usage-ingester"
    failed = "usage store ingest round failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        source: EndedJobs,
        leader: Leader,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.database = database
        self.source = source
        self.leader = leader
        self.clock = clock
        #: The last failure of this replica's ingest (for the admin's view and logs).
        self.last_error: str | None = None

    def interval(self) -> float:
        return self.settings.reports_ingest_seconds

    async def tick(self) -> list[WindowResult] | None:
        """One round if this replica leads: the windows stored, or None."""
        if not self.enabled or not self.leader.is_leader():
            return None
        try:
            return await run_in_threadpool(self.run)
        except LeadershipLost:
            WINDOWS.labels("not_leader").inc()
            return None
        except Exception as exc:
            WINDOWS.labels("failed").inc()
            self.last_error = str(exc)[:500]
            log.warning("usage store ingest failed: %s", self.last_error)
            return None

    def run(self, *, max_windows: int = MAX_WINDOWS_PER_ROUND) -> list[WindowResult]:
        """Store windows from the cursor up to ``settle`` ago (blocking)."""
        cluster = self.source.cluster()
        now = self.clock().replace(microsecond=0)
        settle = timedelta(seconds=int(self.settings.reports_ingest_settle_seconds))
        window = timedelta(minutes=self.settings.reports_ingest_window_minutes)
        until = now - settle
        cursor = self.cursor(cluster.name)
        if cursor is None:
            cursor = now - timedelta(days=self.settings.reports_ingest_lookback_days)
        done: list[WindowResult] = []
        while cursor < until and len(done) < max_windows:
            end = min(cursor + window, until)
            done.append(self.ingest_window(cursor, end, overlap=settle))
            cursor = end
        self.last_error = None
        return done

    def cursor(self, cluster: str) -> datetime | None:
        """Up to when the store holds every ended job of ``cluster`` (blocking)."""
        with self.database.session() as session:
            row = session.get(UsageIngestCursor, cluster)
            return row.ingested_until if row is not None else None

    def ingest_window(self, start: datetime, end: datetime, *, overlap: timedelta) -> WindowResult:
        """Read the jobs that ended in [start - overlap, end) and store them with the
        cursor at ``end``, in one fenced transaction (blocking)."""
        records = self.source.ended_jobs(start - overlap, end)
        cluster = self.source.cluster()
        now = self.clock()
        rows = list({r.job_id: job_row(cluster.name, r, now) for r in records}.values())
        with self.database.session() as session:
            self.leader.fence(session)
            added = add_jobs(session, rows)
            cursor = session.get(UsageIngestCursor, cluster.name, with_for_update=True)
            if cursor is None:
                cursor = UsageIngestCursor(cluster=cluster.name)
                session.add(cursor)
            elif cursor.ingested_until > end:
                end = cursor.ingested_until  # another ingester got further: never go back
            cursor.ingested_until = end
            cursor.window_seconds = int((end - start).total_seconds())
            cursor.slurm_release = str(cluster.release) if cluster.release else None
            cursor.last_jobs = len(added)
            cursor.updated_at = now
        INGESTED.labels(cluster.name).inc(len(added))
        WINDOWS.labels("stored").inc()
        COMPLETE_UNTIL.labels(cluster.name).set(end.timestamp())
        return WindowResult(start=start, end=end, read=len(rows), added=len(added))


def ingest_status(database: Database) -> list[UsageIngestCursor]:
    """Every cluster's cursor (blocking): how current the usage store is."""
    with database.session() as session:
        rows = list(session.scalars(select(UsageIngestCursor).order_by(UsageIngestCursor.cluster)))
        session.expunge_all()
        return rows


class StoreStatus(BaseModel):
    """One cluster's usage store: up to when reports are complete, and its last window."""

    cluster: str
    complete_until: datetime
    #: Seconds from ``complete_until`` to now: the ingest interval plus the settle
    #: time when all is well, growing when sacct cannot be read.
    behind_seconds: int
    last_window_seconds: int
    last_window_jobs: int
    slurm_release: str | None
    updated_at: datetime


class StoreStatusList(BaseModel):
    """``GET /reports/store``: every cluster's store, and how often the leader reads."""

    items: list[StoreStatus]
    ingest_every_seconds: float
    settle_seconds: float


def store_status(database: Database, settings: Settings, now: datetime) -> StoreStatusList:
    """How current the usage store is, for people (blocking): the cursors as they are."""
    return StoreStatusList(
        items=[
            StoreStatus(
                cluster=c.cluster,
                complete_until=c.ingested_until,
                behind_seconds=max(0, int((now - c.ingested_until).total_seconds())),
                last_window_seconds=c.window_seconds,
                last_window_jobs=c.last_jobs,
                slurm_release=c.slurm_release,
                updated_at=c.updated_at,
            )
            for c in ingest_status(database)
        ],
        ingest_every_seconds=settings.reports_ingest_seconds,
        settle_seconds=settings.reports_ingest_settle_seconds,
    )
