"""One shared, cached view of the cluster, refreshed in the background.

Every read of jobs, nodes and partitions is served from the latest
:class:`ClusterSnapshot`. One refresher per process runs ``squeue``, ``sinfo``,
``scontrol show partition`` and ``scontrol show config`` (for ``PrivateData``) once per
interval, however many people are reading, so Slurm's load does not grow with users.
When Slurm fails, readers keep the last snapshot and are told its age and that it is
stale. When slurmctld answers slowly or rate-limits, the interval grows until it
recovers (``load_guard.py``). After the portal's own actions, the jobs acted on are read
again at once (``request_refresh``, coalesced and rate-bounded in ``refresh_soon.py``)
and published into a new snapshot, so pages see the change without waiting an interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from hpcportal.config import Settings
from hpcportal.errors import PortalError, SlurmRateLimited, SlurmUnreachable
from hpcportal.lifecycle import cancel_task
from hpcportal.services.load_guard import LoadGuard
from hpcportal.services.refresh_soon import RefreshSoon
from hpcportal.services.snapshot_metrics import SLURM_GAUGES
from hpcportal.slurm.adapter import SlurmAdapter, job_matches
from hpcportal.slurm.models import Job, Node, Partition, PrivateData, SlurmRoles

log = logging.getLogger(__name__)

REFRESHES = Counter("hpcportal_snapshot_refreshes", "Snapshot refreshes", ["outcome"])
REFRESH_SECONDS = Histogram(
    "hpcportal_snapshot_refresh_seconds",
    "Time to refresh the snapshot (Slurm commands plus parsing)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SNAPSHOT_AGE = Gauge("hpcportal_snapshot_age_seconds", "Age of the served snapshot")
SNAPSHOT_JOBS = Gauge("hpcportal_snapshot_jobs", "Jobs in the served snapshot")
#: How often a follower's refresher looks whether it has become the leader.
FOLLOWER_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class ClusterSnapshot:
    """An immutable picture of the cluster at one moment, with lookup indexes.

    ``private_data`` is slurmctld's ``PrivateData`` read in the same refresh, and
    ``roles`` Slurm's operators and coordinators (read only when ``PrivateData`` hides
    something): ``services.visibility`` filters every view of this snapshot with them.
    """

    taken_at: datetime
    monotonic: float
    generation: int
    duration: float
    jobs: tuple[Job, ...]
    nodes: tuple[Node, ...]
    partitions: tuple[Partition, ...]
    jobs_by_id: dict[str, Job] = field(default_factory=dict)
    nodes_by_name: dict[str, Node] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    private_data: PrivateData = field(default_factory=PrivateData)
    roles: SlurmRoles = field(default_factory=SlurmRoles)

    @classmethod
    def build(
        cls,
        generation: int,
        duration: float,
        jobs: list[Job],
        nodes: list[Node],
        partitions: list[Partition],
        private_data: PrivateData | None = None,
        roles: SlurmRoles | None = None,
    ) -> ClusterSnapshot:
        jobs_by_id: dict[str, Job] = {}
        for job in jobs:
            jobs_by_id[job.id] = job
            jobs_by_id.setdefault(str(job.job_id), job)
        return cls(
            taken_at=datetime.now(UTC),
            monotonic=time.monotonic(),
            generation=generation,
            duration=duration,
            jobs=tuple(jobs),
            nodes=tuple(nodes),
            partitions=tuple(partitions),
            jobs_by_id=jobs_by_id,
            nodes_by_name={n.name: n for n in nodes},
            private_data=private_data or PrivateData(),
            roles=roles or SlurmRoles(),
        )

    def with_jobs(self, generation: int, job_ids: set[str], fresh: list[Job]) -> ClusterSnapshot:
        """This snapshot with the jobs named in ``job_ids`` as Slurm just listed them.

        Only ids Slurm answered for are replaced (an array's tasks all at once); the
        rest, nodes and partitions included, stay as they were, and so do ``taken_at``
        and the age: the picture as a whole is no fresher than its last full refresh.
        """
        answered = {i for i in job_ids if any(job_matches(j, {i}) for j in fresh)}
        by_id = {j.id: j for j in fresh}
        jobs: list[Job] = []
        for job in self.jobs:
            if job.id in by_id:
                jobs.append(by_id.pop(job.id))
            elif not job_matches(job, answered):
                jobs.append(job)
        jobs.extend(j for j in fresh if j.id in by_id)
        built = ClusterSnapshot.build(
            generation,
            self.duration,
            jobs,
            list(self.nodes),
            list(self.partitions),
            self.private_data,
            self.roles,
        )
        return replace(built, taken_at=self.taken_at, monotonic=self.monotonic)

    def age(self) -> float:
        return time.monotonic() - self.monotonic

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a derived view (a sort order, a summary) once per snapshot."""
        try:
            return self.derived[key]
        except KeyError:
            value = self.derived[key] = compute()
            return value


#: Called with ``(previous, current)`` after each successful refresh (see ``add_listener``).
SnapshotListener = Callable[[ClusterSnapshot | None, ClusterSnapshot], None]


@dataclass(frozen=True, slots=True)
class SnapshotHealth:
    """What ``/ready`` and every read report about freshness."""

    taken_at: datetime | None
    age_seconds: float | None
    stale: bool
    last_error: str | None
    generation: int
    #: The refresher's current interval, and why it is longer than configured (if it is).
    interval: float | None = None
    backoff: str | None = None
    #: The typed error's code (``slurm_unsupported``, ``slurm_timeout``, ...), if any.
    last_error_code: str | None = None


class SnapshotService:
    """Owns the refresher task and the current snapshot of one portal process."""

    def __init__(self, adapter: SlurmAdapter, settings: Settings) -> None:
        self.adapter = adapter
        self.guard = LoadGuard(
            settings.refresh_interval, settings.refresh_max_interval, settings.refresh_slow_fraction
        )
        self.stale_after = settings.stale_after
        self.first_wait = min(settings.slurm_timeout, 30.0)
        self._current: ClusterSnapshot | None = None
        self._generation = 0
        self._last_error: str | None = None
        self._last_error_code: str | None = None
        self._last_failed = False
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._refresh_lock = asyncio.Lock()
        # Four threads: the four Slurm commands of one refresh run side by side.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="snapshot")
        # Reads after actions: their own thread, never queued behind a full refresh.
        self._jobs_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-jobs")
        #: Job id -> (when Slurm was asked, the jobs it listed): see ``refresh_jobs``.
        self._job_reads: dict[str, tuple[float, list[Job]]] = {}
        self._roles = SlurmRoles()
        self._warned_blind: PrivateData | None = None
        self._listeners: list[SnapshotListener] = []
        self.soon = RefreshSoon(
            self.refresh_jobs,
            delay=settings.refresh_soon_delay,
            min_gap=settings.refresh_soon_min_gap,
            gap=lambda: self.guard.interval if self.guard.backing_off else 0.0,
        )
        #: With several replicas (``ha.replication``): only the leader reads Slurm
        #: (``leading``); a follower installs the leader's snapshots (``install``) and
        #: sends its ``request_refresh`` to the leader (``forward_refresh``).
        self.leading: Callable[[], bool] = lambda: True
        self.forward_refresh: Callable[[list[str]], None] | None = None
        #: Told of each failed refresh (the leader tells the followers).
        self.on_failure: Callable[[str, str | None], None] | None = None
        SNAPSHOT_AGE.set_function(self._age_for_metrics)
        SLURM_GAUGES.follow(self.latest)

    def add_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener(previous, current)`` after each successful refresh.

        Listeners run on the event loop right after the new snapshot is published and
        must return quickly (schedule slow work themselves). One that raises is logged
        and the others and the refresher carry on.
        """
        self._listeners.append(listener)

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="snapshot-refresher")
        self.soon.start()

    async def stop(self) -> None:
        await self.soon.stop()
        await cancel_task(self._task)
        self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._jobs_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def interval(self) -> float:
        """Seconds between refreshes now: the configured ones, or longer while backing off."""
        return self.guard.interval

    async def _run(self) -> None:
        while True:
            if not self.leading():  # a follower: the leader reads Slurm for everyone
                await asyncio.sleep(FOLLOWER_CHECK_SECONDS)
                continue
            started = time.monotonic()
            await self.refresh()
            if self.guard.backing_off:
                # A struggling slurmctld gets a whole quiet interval after each refresh.
                await asyncio.sleep(self.interval)
            else:
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    # --- refreshing ---------------------------------------------------------------

    async def refresh(self) -> ClusterSnapshot | None:
        """Read the cluster once and publish a new snapshot; keep the old one on failure."""
        async with self._refresh_lock:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            asked_at = time.monotonic()
            try:
                jobs, nodes, partitions, private_data = await asyncio.gather(
                    loop.run_in_executor(self._pool, self.adapter.jobs),
                    loop.run_in_executor(self._pool, self.adapter.nodes),
                    loop.run_in_executor(self._pool, self.adapter.partitions),
                    loop.run_in_executor(self._pool, self.adapter.controller_private_data),
                )
                roles = self._roles
                if private_data.flags - {"cloud"}:
                    roles = await loop.run_in_executor(self._pool, self._read_roles)
                    self._warn_if_blind(private_data, roles)
            except PortalError as exc:
                limited = isinstance(exc, SlurmRateLimited)
                self.guard.observe(time.perf_counter() - started, ok=False, rate_limited=limited)
                self._fail(exc.message, exc.code)
                return self._current
            except Exception as exc:  # a parser bug must not stop the refresher
                log.exception("snapshot refresh failed")
                self.guard.observe(time.perf_counter() - started, ok=False)
                self._fail(f"unexpected error while reading Slurm: {exc}")
                return self._current
            duration = time.perf_counter() - started
            self.guard.observe(duration, ok=True)
            self._generation += 1
            previous = self._current
            current = ClusterSnapshot.build(
                self._generation, duration, jobs, nodes, partitions, private_data, roles
            )
            self._current = current = self._with_newer_job_reads(current, asked_at)
            self._last_failed = False
            self._last_error = None
            self._last_error_code = None
            self._first.set()
            REFRESHES.labels("ok").inc()
            REFRESH_SECONDS.observe(duration)
            SNAPSHOT_JOBS.set(len(jobs))
            self._tell_listeners(previous, current)
            return current

    def _tell_listeners(self, previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        for listener in self._listeners:
            try:
                listener(previous, current)
            except Exception:  # a listener must never stop the refresher
                log.exception("snapshot listener %r failed", listener)

    # --- after the portal's own actions ------------------------------------------------

    def request_refresh(self, *job_ids: str | int) -> None:
        """The portal just acted on these jobs: read them again soon and publish the
        result (coalesced and rate-bounded, see ``refresh_soon.py``)."""
        if self.forward_refresh is not None and not self.leading():
            self.forward_refresh([str(j) for j in job_ids])
            return
        self.soon.request(str(j) for j in job_ids)

    def install(self, snap: ClusterSnapshot) -> bool:
        """A follower serves the leader's snapshot ``snap`` (if newer than its own) and
        tells the listeners, as after its own refresh. Its generation numbers follow
        the leader's, so they stay one sequence across replicas and leader changes."""
        if self._current is not None and snap.generation <= self._current.generation:
            return False
        previous = self._current
        self._current = snap
        self._generation = max(self._generation, snap.generation)
        self._last_failed = False
        self._last_error = None
        self._last_error_code = None
        self._first.set()
        SNAPSHOT_JOBS.set(len(snap.jobs))
        self._tell_listeners(previous, snap)
        return True

    def leader_failed(self, message: str, code: str | None) -> None:
        """A follower hears that the leader's last refresh failed: the same staleness."""
        self._fail(message, code, tell=False)

    async def refresh_jobs(self, job_ids: Iterable[str]) -> list[Job] | None:
        """Read only the named jobs (one ``squeue --jobs``) into a new snapshot.

        It never waits for a full refresh under way (that may take seconds on a busy
        slurmctld); instead, a full refresh that asked Slurm before this read keeps
        what this read found (``_with_newer_job_reads``), so it cannot undo it.
        """
        ids = set(job_ids)
        if self._current is None or not ids:
            return None
        loop = asyncio.get_running_loop()
        asked_at = time.monotonic()
        try:
            fresh = await loop.run_in_executor(
                self._jobs_pool, self.adapter.jobs_named, sorted(ids)
            )
        except PortalError as exc:
            if isinstance(exc, SlurmRateLimited):
                self.guard.observe(time.monotonic() - asked_at, ok=False, rate_limited=True)
            log.info("reading jobs %s again failed: %s", ",".join(sorted(ids)), exc.message)
            return None
        for job_id in ids:
            mine = [j for j in fresh if job_matches(j, {job_id})]
            if mine:
                self._job_reads[job_id] = (asked_at, mine)
        previous = self._current
        self._generation += 1
        self._current = current = previous.with_jobs(self._generation, ids, fresh)
        self._tell_listeners(previous, current)
        return fresh

    def _with_newer_job_reads(self, snap: ClusterSnapshot, asked_at: float) -> ClusterSnapshot:
        """``snap`` (whose squeue was asked at ``asked_at``) with the jobs read on their
        own since then; reads older than it are forgotten, it is newer."""
        self._job_reads = {i: r for i, r in self._job_reads.items() if r[0] > asked_at}
        if not self._job_reads:
            return snap
        fresh = list({j.id: j for _, jobs in self._job_reads.values() for j in jobs}.values())
        return snap.with_jobs(snap.generation, set(self._job_reads), fresh)

    def _read_roles(self) -> SlurmRoles:
        """Slurm's operators and coordinators (cached by the adapter). If slurmdbd cannot
        say, the last answer stays; with none, nobody is privileged: a failure may hide
        more than Slurm would, never show more."""
        try:
            self._roles = self.adapter.roles()
        except PortalError as exc:
            log.warning("cannot read Slurm's admin levels and coordinators: %s", exc.message)
        return self._roles

    def _warn_if_blind(self, private: PrivateData, roles: SlurmRoles) -> None:
        """Say once per setting when the portal's own account is not privileged in Slurm:
        ``squeue --all`` then lists only its own jobs, so everyone sees (too) little."""
        hiding = private.flags & {"jobs", "nodes", "partitions", "usage"}
        if not hiding or private == self._warned_blind:
            return
        try:
            account = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            account = str(os.geteuid())
        if account in ("root", private.slurm_user) or roles.is_operator(account):
            return
        self._warned_blind = private
        log.warning(
            "Slurm keeps %s private (PrivateData) and the portal's account %s is not an "
            "operator: it sees only its own; give it AdminLevel=Operator "
            "(sacctmgr modify user %s set adminlevel=operator)",
            ",".join(sorted(hiding)),
            account,
            account,
        )

    def _fail(self, message: str, code: str | None = None, *, tell: bool = True) -> None:
        log.warning("snapshot refresh failed: %s", message)
        if tell and self.on_failure is not None:
            self.on_failure(message, code)
        self._last_failed = True
        self._last_error = message
        self._last_error_code = code
        REFRESHES.labels("error").inc()
        if self._current is None:
            # Nobody waits forever for a first snapshot that cannot come.
            self._first.set()

    # --- reading ----------------------------------------------------------------------

    async def current(self) -> ClusterSnapshot:
        """The latest snapshot; waits briefly for the first one after start-up."""
        if self._current is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first.wait(), timeout=self.first_wait)
        if self._current is None:
            reason = self._last_error or "the first read of the cluster has not finished"
            raise SlurmUnreachable(f"No cluster data yet: {reason}")
        return self._current

    def latest(self) -> ClusterSnapshot | None:
        """The latest snapshot without waiting; None before the first (``/metrics``)."""
        return self._current

    def health(self) -> SnapshotHealth:
        snap = self._current
        age = snap.age() if snap else None
        # Backing off makes snapshots older on purpose: that alone is not staleness.
        stale_after = self.stale_after + (self.guard.interval - self.guard.base)
        stale = snap is None or self._last_failed or (age is not None and age > stale_after)
        backoff = self.guard.backoff
        return SnapshotHealth(
            taken_at=snap.taken_at if snap else None,
            age_seconds=round(age, 3) if age is not None else None,
            stale=stale,
            last_error=self._last_error,
            last_error_code=self._last_error_code,
            generation=self._generation,
            interval=self.guard.interval,
            backoff=backoff.message if backoff else None,
        )

    def _age_for_metrics(self) -> float:
        return self._current.age() if self._current else float("nan")
