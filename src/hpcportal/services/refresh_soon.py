"""Read jobs again right after the portal acted on them, with Slurm's load bounded.

After a submit, cancel, hold, release, requeue or session launch/delete, the router
asks ``SnapshotService.request_refresh(job_id)``. Requests are only collected; one task
per process reads all the jobs asked for since its last read in a single
``squeue --jobs a,b,...`` and publishes them into the snapshot, so every open page
hears of the change through the usual live push. However many actions come in, there
is at most one such read per ``refresh_soon_min_gap`` seconds (per replica), and while
the load guard backs off its interval is the gap: a struggling slurmctld is never asked
more often than the refresher itself asks it.

Slurm moves some jobs through a short state first (a cancelled running job is
``COMPLETING`` for a moment; a submitted or released job is ``PENDING`` until the
scheduler starts it, often a second later): a job read in one is asked about again
after ``min_gap``, twice that, four times that..., at most ``MAX_FOLLOW_UPS`` times.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter

from hpcportal.lifecycle import cancel_task
from hpcportal.slurm.adapter import job_matches
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "hpcportal_refresh_soon_requests", "Jobs the portal asked to read again after acting"
)
READS = Counter("hpcportal_refresh_soon_reads", "squeue --jobs reads after the portal's actions")

#: States Slurm passes through on the way to the one a person expects to see.
PASSING = frozenset({JobStatus.COMPLETING, JobStatus.QUEUED})
#: How often a job seen in a passing state is asked about again.
MAX_FOLLOW_UPS = 4
#: Ids per read: a burst of actions is split over several reads, not one huge argv.
MAX_IDS = 200

#: Reads the named jobs and publishes them; returns the jobs it read (None: it could not).
JobReader = Callable[[set[str]], Awaitable[list[Job] | None]]


class RefreshSoon:
    """Collects job ids and reads them in coalesced, rate-bounded batches."""

    def __init__(
        self,
        read: JobReader,
        *,
        delay: float,
        min_gap: float,
        gap: Callable[[], float] | None = None,
    ) -> None:
        self._read = read
        self.delay = delay
        self.min_gap = min_gap
        #: The current gap (the load guard's interval while it backs off).
        self._gap = gap or (lambda: min_gap)
        self._pending: set[str] = set()
        self._follow_ups: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._last = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.reads = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="refresh-soon")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    def request(self, job_ids: Iterable[str]) -> None:
        """Read these jobs again soon (cheap: only noted; safe to call often)."""
        fresh = {str(j) for j in job_ids if j} - self._pending
        if not fresh:
            return
        REQUESTS.inc(len(fresh))
        for job_id in fresh:
            self._follow_ups.pop(job_id, None)
        self._pending |= fresh
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.delay)  # gather the requests of the same moment
            wait = self._last + max(self.min_gap, self._gap()) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            batch = set(sorted(self._pending)[:MAX_IDS])
            self._pending -= batch
            if self._pending:
                self._wake.set()
            self._last = time.monotonic()
            try:
                jobs = await self._read(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading jobs %s again failed", ",".join(sorted(batch)))
                jobs = None
            self.reads += 1
            READS.inc()
            self._follow_up(batch, jobs or [])

    def _follow_up(self, batch: set[str], jobs: list[Job]) -> None:
        """Ask again about jobs still in a passing state, ever later, a bounded number
        of times."""
        loop = asyncio.get_running_loop()
        for job_id in batch:
            mine = [j for j in jobs if job_matches(j, {job_id})]
            if not any(j.status in PASSING for j in mine):
                self._follow_ups.pop(job_id, None)
                continue
            tries = self._follow_ups.get(job_id, 0) + 1
            if tries <= MAX_FOLLOW_UPS:
                self._follow_ups[job_id] = tries
                loop.call_later(self.min_gap * 2 ** (tries - 1), self._again, job_id)
            else:
                self._follow_ups.pop(job_id, None)

    def _again(self, job_id: str) -> None:
        if job_id in self._follow_ups:  # not settled or asked for afresh since
            self._pending.add(job_id)
            self._wake.set()
