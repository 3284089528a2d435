"""Scheduler health in the admin console: ``sdiag`` over time, top RPC users, pending
reasons by partition.

One sampler per cluster, not per replica or viewer: ``SdiagSampler`` runs on every
replica but reads ``sdiag`` only while its replica leads (``ha.leadership``), every
``sdiag_sample_seconds``, and stores the reading in ``sdiag_samples`` through a fenced
transaction (a leader that lost its lease writes nothing), deleting samples older than
``sdiag_retention_days`` in the same transaction. So slurmctld sees one ``sdiag`` per
interval whatever the number of replicas, and pages and the API read the database only.
Pending reasons come from the shared snapshot: no Slurm call at all.

``sdiag`` runs as the portal's own user: slurmctld answers any user unless
``PrivateData`` includes ``usage``; then it refuses a user who is not an operator, the
sampler logs it and counts it, and the page says why it has no figures.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Counter as PromCounter
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.models import SdiagSample
from hpcportal.db.session import Database
from hpcportal.ha import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.sdiag import RpcByUser, SchedulerStats
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

SAMPLES = PromCounter(
    "hpcportal_sdiag_samples", "Scheduler statistics samples (sdiag) by outcome", ["outcome"]
)
_PENDING = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD})


class Leader(Protocol):
    """What the sampler asks of ``ha.leadership.Leadership``."""

    def is_leader(self) -> bool: ...

    def fence(self, session: Session) -> None: ...


class StatsSource(Protocol):
    """Where readings come from: ``SlurmAdapter.scheduler_stats`` (blocking)."""

    def scheduler_stats(self) -> SchedulerStats: ...


class SdiagSampler(PeriodicPart):
    """The background part: read ``sdiag`` every interval while leading, store it."""

    loop_name = "sdiag-sampler"
    failed = "scheduler statistics round failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        source: StatsSource,
        leader: Leader,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.database = database
        self.source = source
        self.leader = leader
        self.clock = clock
        #: The last failure to read or store (this replica), shown on the page.
        self.last_error: str | None = None

    def interval(self) -> float:
        return self.settings.sdiag_sample_seconds

    async def tick(self) -> SchedulerStats | None:
        """One reading if this replica leads; the reading stored, or None."""
        if not self.enabled or not self.leader.is_leader():
            return None
        try:
            stats = await run_in_threadpool(self.source.scheduler_stats)
        except Exception as exc:
            SAMPLES.labels("failed").inc()
            self.last_error = str(exc)[:500]
            log.warning("cannot read scheduler statistics (sdiag): %s", self.last_error)
            return None
        try:
            await run_in_threadpool(self.store, stats, self.clock())
        except LeadershipLost:
            SAMPLES.labels("not_leader").inc()
            return None
        SAMPLES.labels("stored").inc()
        self.last_error = None
        return stats

    def store(self, stats: SchedulerStats, now: datetime) -> None:
        """Add the reading and drop those past retention, fenced (blocking)."""
        keep_from = now - timedelta(days=self.settings.sdiag_retention_days)
        with self.database.session() as session:
            self.leader.fence(session)
            session.add(SdiagSample(at=now, stats=stats.model_dump(mode="json")))
            session.execute(delete(SdiagSample).where(SdiagSample.at < keep_from))


# --- reads for the page and the API --------------------------------------------------------


class HistoryPoint(BaseModel):
    """The figures drawn over time, from one sample."""

    at: datetime
    server_thread_count: int
    agent_queue_size: int
    schedule_cycle_last: int
    schedule_cycle_mean: int | None
    backfill_cycle_last: int
    backfill_cycle_mean: int | None
    backfill_last_depth: int
    backfill_depth_mean: int | None
    jobs_submitted: int
    jobs_started: int
    jobs_completed: int
    jobs_pending: int
    jobs_running: int


class ReasonCount(BaseModel):
    reason: str
    jobs: int


class PartitionPending(BaseModel):
    """Pending jobs of one partition by Slurm's reason (from the snapshot)."""

    partition: str
    pending: int
    reasons: list[ReasonCount]


class SchedulerHealth(BaseModel):
    """The scheduler page: the latest sample, the heaviest RPC users, pending reasons."""

    sampled_at: datetime | None
    sample_seconds: float
    latest: SchedulerStats | None
    top_rpc_users: list[RpcByUser]
    pending_by_partition: list[PartitionPending]
    sampler_error: str | None = None


def latest(database: Database) -> tuple[datetime, SchedulerStats] | None:
    """The newest stored sample (blocking)."""
    with database.session() as session:
        row = session.scalars(
            select(SdiagSample).order_by(SdiagSample.at.desc(), SdiagSample.id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return row.at, SchedulerStats.model_validate(row.stats)


def history(database: Database, since: datetime, *, points: int = 500) -> list[HistoryPoint]:
    """Samples taken since ``since``, oldest first, at most ``points`` of them spread
    evenly over the time (a week of one-minute samples is 10,080; a chart is 600 px
    wide), always with the newest (blocking)."""
    with database.session() as session:
        ids = list(
            session.scalars(
                select(SdiagSample.id)
                .where(SdiagSample.at >= since)
                .order_by(SdiagSample.at, SdiagSample.id)
            )
        )
        step = max(1, -(-len(ids) // points))
        chosen = ids[::step]
        if ids and chosen[-1] != ids[-1]:
            chosen[-1] = ids[-1]
        rows = (
            list(
                session.scalars(
                    select(SdiagSample)
                    .where(SdiagSample.id.in_(chosen))
                    .order_by(SdiagSample.at, SdiagSample.id)
                )
            )
            if chosen
            else []
        )
    result = []
    for row in rows:
        stats = SchedulerStats.model_validate(row.stats)
        result.append(HistoryPoint(at=row.at, **stats.model_dump(include=_POINT_FIELDS)))
    return result


_POINT_FIELDS = set(HistoryPoint.model_fields) - {"at"}


def top_rpc_users(stats: SchedulerStats, count: int = 10) -> list[RpcByUser]:
    """The users whose RPCs cost slurmctld most time, then the most RPCs."""
    ranked = sorted(stats.rpcs_by_user, key=lambda u: (-u.total_us, -u.count, u.user))
    return ranked[:count]


def pending_by_partition(snap: ClusterSnapshot) -> list[PartitionPending]:
    """Pending jobs by partition and reason, busiest partition first (no Slurm call).

    A job pending in several partitions (``-p a,b``) counts in each."""
    reasons: dict[str, Counter[str]] = {}
    for job in snap.jobs:
        if job.status not in _PENDING:
            continue
        for partition in (job.partition or "").split(",") or [""]:
            counts = reasons.setdefault(partition or "-", Counter())
            counts[job.reason or "None"] += 1
    rows = [
        PartitionPending(
            partition=name,
            pending=sum(counts.values()),
            reasons=[ReasonCount(reason=r, jobs=n) for r, n in counts.most_common()],
        )
        for name, counts in reasons.items()
    ]
    return sorted(rows, key=lambda r: (-r.pending, r.partition))


def health(
    database: Database, snap: ClusterSnapshot, settings: Settings, error: str | None = None
) -> SchedulerHealth:
    """Everything the scheduler page shows but the history (blocking)."""
    found = latest(database)
    stats = found[1] if found else None
    return SchedulerHealth(
        sampled_at=found[0] if found else None,
        sample_seconds=settings.sdiag_sample_seconds,
        latest=stats,
        top_rpc_users=top_rpc_users(stats) if stats else [],
        pending_by_partition=pending_by_partition(snap),
        sampler_error=error,
    )
