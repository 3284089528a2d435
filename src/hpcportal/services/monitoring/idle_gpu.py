"""Idle-GPU nudges: a running job whose GPUs stay below ``gpu_idle_threshold_percent``
for ``gpu_idle_minutes`` gets its owner one notification (bell and live socket), with
the figure and a link to the job's graphs.

Every ``gpu_idle_check_seconds`` the leader (``ha.Leadership``) takes the running jobs
holding GPUs from the shared snapshot (no Slurm call) and asks Prometheus, for each job
not told yet, one instant query built from the metric catalog's ``gpu_util`` job query
(DCGM exporter's ``hpc_job`` label): the highest utilisation of the job's GPUs over the
window, answered only if the window is covered (``count_over_time`` of a subquery), so a
job whose GPUs have no figures is never called idle. A job told is stored in
``gpu_idle_nudges`` in the same fenced transaction as its notification, inserted only
if absent: a restart, a second replica or a new leader never tells twice. Admins list
them (``GET /api/v1/monitoring/idle-gpus``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.models import GpuIdleNudge
from hpcportal.db.session import Database
from hpcportal.db.upsert import insert_if_absent
from hpcportal.errors import PortalError
from hpcportal.ha.lease import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.prometheus.models import Vector
from hpcportal.services.monitoring import catalog
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.notifications import Delivery
from hpcportal.services.notifications.detector import deliveries_for, insert_new, new_row
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

NUDGES = Counter(
    "hpcportal_gpu_idle_nudges",
    "Idle-GPU notifications stored by this replica, and checks by outcome",
    ["outcome"],
)

EVENT = "gpu_idle"


class SnapshotSource(Protocol):
    async def current(self) -> ClusterSnapshot: ...


class Leader(Protocol):
    def is_leader(self) -> bool: ...
    def fence(self, session: Session) -> None: ...


class IdleGpuJob(BaseModel):
    """A job whose owner was told its GPUs stayed idle."""

    job_id: str
    user: str
    job_name: str
    nodes: str
    gpus: int
    peak_percent: float
    threshold_percent: float
    minutes: float
    nudged_at: datetime
    link: str


class IdleGpuList(BaseModel):
    items: list[IdleGpuJob]


def idle_query(job_query: str, label: str, job_id: int, minutes: float, step: float) -> str:
    """The highest value of the job's GPU utilisation over the last ``minutes``, only
    if at least 90 % of the window's steps have a figure (else an empty answer)."""
    inner = catalog.render(job_query, job=catalog.job_matcher(label, job_id),
                           window=f"{step:g}s")  # fmt: skip
    window = f"[{round(minutes * 60)}s:{step:g}s]"
    needed = max(1, math.floor(minutes * 60 / step * 0.9))
    return (f"max(max_over_time(({inner}){window})) "
            f"and on() (min(count_over_time(({inner}){window})) >= {needed})")  # fmt: skip


def _text(job: Job, peak: float, settings: Settings) -> tuple[str, str, dict[str, object]]:
    threshold, minutes = settings.gpu_idle_threshold_percent, settings.gpu_idle_minutes
    params: dict[str, object] = {
        "job_id": str(job.job_id),
        "job_name": job.name,
        "peak": f"{peak:.1f} %",
        "threshold": f"{threshold:g} %",
        "minutes": f"{minutes:g}",
        "peak_percent": peak,
        "threshold_percent": threshold,
        "link": f"/jobs/{job.job_id}#graphs-title",
    }
    body = (f"Job {job.job_id} ({job.name}) has kept its GPUs below {threshold:g} % for "
            f"{minutes:g} minutes (at most {peak:.1f} %). See its graphs; if it does not "
            "need GPUs, resubmit it without them so others can use them.")  # fmt: skip
    return "GPUs idle", body, params


class IdleGpuChecker(PeriodicPart):
    """The background part: check running GPU jobs every interval while leading."""

    loop_name = "gpu-idle-checker"
    failed = "idle-GPU check failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        snapshot: SnapshotSource,
        monitoring: MonitoringService,
        leader: Leader,
        *,
        deliver: Callable[[Iterable[Delivery]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.database = database
        self.snapshot = snapshot
        self.monitoring = monitoring
        self.leader = leader
        self.deliver = deliver
        self.clock = clock
        self.last_error: str | None = None

    def interval(self) -> float:
        return self.settings.gpu_idle_check_seconds

    @property
    def enabled(self) -> bool:
        return super().enabled and self.monitoring.client is not None

    async def tick(self) -> list[Delivery]:
        """One round if this replica leads: what it stored (and pushed)."""
        if not self.enabled or not self.leader.is_leader():
            return []
        try:
            found = await self.idle_jobs()
        except PortalError as exc:  # Prometheus down, no GPU exporter naming jobs, ...
            NUDGES.labels("failed").inc()
            self.last_error = str(exc)[:500]
            log.warning("idle-GPU check: %s", self.last_error)
            return []
        self.last_error = None
        if not found:
            return []
        try:
            deliveries = await run_in_threadpool(self.store, found, self.clock())
        except LeadershipLost:
            NUDGES.labels("not_leader").inc()
            return []
        NUDGES.labels("stored").inc(len(deliveries))
        if self.deliver is not None and deliveries:
            self.deliver(deliveries)
        return deliveries

    def candidates(self, jobs: Sequence[Job], told: set[str], now: datetime) -> list[Job]:
        """Running jobs holding GPUs, running for at least the idle window, not told."""
        window = timedelta(minutes=self.settings.gpu_idle_minutes)
        return [j for j in jobs if j.status is JobStatus.RUNNING and j.gpus > 0
                and j.start_time is not None and now - j.start_time >= window
                and str(j.job_id) not in told]  # fmt: skip

    async def idle_jobs(self) -> list[tuple[Job, float]]:
        """Each candidate whose GPUs' peak over the window is below the threshold."""
        snap = await self.snapshot.current()
        running = self.candidates(snap.jobs, set(), self.clock())
        if not running:
            return []
        told = await run_in_threadpool(self.told, [str(j.job_id) for j in running])
        jobs = self.candidates(running, told, self.clock())
        if not jobs:
            return []
        found = (await self.monitoring.resolved()).get("gpu_util")
        source = found.source if found is not None else None
        if source is None or source.job_query is None:
            raise PortalError(
                "no GPU exporter here names the job using a GPU (DCGM exporter's "
                f"{self.settings.prometheus_gpu_job_label} label), so idle GPUs are not "
                "checked."
            )
        client = self.monitoring.prometheus()
        step = max(self.settings.prometheus_min_step, 1.0)
        queries = [idle_query(source.job_query, self.settings.prometheus_gpu_job_label,
                              j.job_id, self.settings.gpu_idle_minutes, step)
                   for j in jobs]  # fmt: skip
        answers = await asyncio.gather(*(client.query(q) for q in queries))
        idle = []
        for job, answer in zip(jobs, answers, strict=True):
            data = answer.data
            if not isinstance(data, Vector) or not data.result:
                continue  # no figures for the whole window: not known to be idle
            peak = float(data.result[0].value[1])
            if math.isfinite(peak) and peak < self.settings.gpu_idle_threshold_percent:
                idle.append((job, peak))
        return idle

    def told(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs were told already (blocking)."""
        if not job_ids:
            return set()
        with self.database.session() as session:
            rows = session.scalars(select(GpuIdleNudge.job_id).where(
                GpuIdleNudge.job_id.in_(list(job_ids)))).all()  # fmt: skip
        return set(rows)

    def store(self, found: Sequence[tuple[Job, float]], now: datetime) -> list[Delivery]:
        """Remember each job and tell its owner, once, fenced (blocking)."""
        settings = self.settings
        rows = [{
            "job_id": str(job.job_id), "username": job.user, "job_name": job.name[:200],
            "nodes": job.nodes or ",".join(job.node_names), "gpus": job.gpus,
            "peak_percent": peak, "threshold_percent": settings.gpu_idle_threshold_percent,
            "minutes": settings.gpu_idle_minutes, "nudged_at": now,
        } for job, peak in sorted(found, key=lambda f: str(f[0].job_id))]  # fmt: skip
        with self.database.session() as session:
            self.leader.fence(session)
            stmt = insert_if_absent(session, GpuIdleNudge, rows, ["job_id"])
            added = set(session.scalars(stmt.returning(GpuIdleNudge.job_id)))
            notes = []
            for job, peak in found:
                if str(job.job_id) in added:
                    title, body, params = _text(job, peak, settings)
                    notes.append(new_row(job.user, "job", EVENT, title, body, params, now,
                                         job_id=str(job.job_id)))  # fmt: skip
            inserted = insert_new(session, notes, ["username", "job_id", "event"])
            return deliveries_for(session, inserted)


def listing(database: Database) -> IdleGpuList:
    """Every job told, newest first (blocking; for admins)."""
    with database.session() as session:
        rows = session.scalars(select(GpuIdleNudge).order_by(
            GpuIdleNudge.nudged_at.desc(), GpuIdleNudge.job_id)).all()  # fmt: skip
        return IdleGpuList(items=[IdleGpuJob(
            job_id=r.job_id, user=r.username, job_name=r.job_name, nodes=r.nodes,
            gpus=r.gpus, peak_percent=r.peak_percent, threshold_percent=r.threshold_percent,
            minutes=r.minutes, nudged_at=r.nudged_at, link=f"/jobs/{r.job_id}#graphs-title",
        ) for r in rows])  # fmt: skip
