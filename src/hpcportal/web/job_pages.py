"""The jobs list (``/jobs``), one job's page (``/jobs/{id}``) and the job-id jump box.

Finished jobs are first-class here: the list shows jobs that ended in the last days
(``?recent=N``, from accounting) beside the queue, and a job's page looks the same
whether slurmctld still holds the job or only accounting remembers it — the state and
times, the output read from the file Slurm wrote (``--output`` expanded as Slurm
expands it), the script and environment accounting recorded. Things that only matter
while a job waits (priority, reason, dependency, expected start) or runs (elapsed
against the time limit) are shown only then; ``static/js/job_status.js`` keeps them
right as the job changes, and fetches its efficiency from the API.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from hpcportal.db.session import Database
from hpcportal.dependencies import AdapterDep, DatabaseDep, RunAsDep, SnapshotDep
from hpcportal.errors import InvalidInput, NotFound, PortalError
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.finished_jobs import RECENT_DAYS, job_from_record, recent_jobs
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import FINISHED, OutputChunk, read_chunk
from hpcportal.services.jobs import JobDetail, JobQuery
from hpcportal.services.portal_jobs import submitted_job, submitted_since
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.visibility import for_snapshot, visible_jobs
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus
from hpcportal.web import i18n
from hpcportal.web.common import (
    OUTPUT_TAIL_BYTES,
    PAGE_SIZES,
    SORTS,
    Page,
    PageDep,
)
from hpcportal.web.common import current_snapshot as _snapshot
from hpcportal.web.common import in_session as _in_session
from hpcportal.web.common import page_error as _page_error
from hpcportal.web.i18n import N_

_csv = job_service.split_csv
_may_act = job_service.can_see_private

router = APIRouter(include_in_schema=False)

ACTION_LABELS: Final = {
    "cancel": N_("Cancel"),
    "hold": N_("Hold"),
    "release": N_("Release"),
    "requeue": N_("Requeue"),
}
RECENT_LABELS: Final = {
    0: N_("Queue only"),
    1: N_("Ended in the last day"),
    7: N_("Ended in the last 7 days"),
    30: N_("Ended in the last 30 days"),
}
WAITING: Final = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD})
#: priority/basic counts down from here (first come, first served); values above
#: are Slurm's NO_VAL and INFINITE sentinels, not priorities.
_BASIC_PRIORITY_FLOOR: Final = 0xFFFF0000 - 0x10000000
_NO_VAL: Final = 0xFFFFFFFE


# --- the jobs list ----------------------------------------------------------------------


def _recent(
    adapter: SlurmAdapter,
    database: Database,
    snap: ClusterSnapshot,
    who: Principal,
    users: list[str],
    days: int,
) -> tuple[list[Job], str | None]:
    """Jobs that ended in the last ``days`` days (or why accounting cannot say), and the
    person's own portal submissions of those days that neither Slurm nor accounting
    lists any more."""
    error = None
    try:
        finished = recent_jobs(adapter, who, users, days)
    except PortalError as exc:
        finished, error = [], exc.message
    if days <= 0 or (users and users != [who.username]):
        return finished, error
    known = {key for j in [*snap.jobs, *finished] for key in _ids(j)}
    mine = _in_session(
        database, lambda session: submitted_since(session, who.username, days, known)
    )
    return [*finished, *mine], error


def _ids(job: Job) -> tuple[str, ...]:
    """The ids a job answers to: its own, its number, its array's."""
    parent = (str(job.array.job_id),) if job.array is not None else ()
    return (job.id, str(job.job_id), *parent)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(
    request: Request,
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    scope: Literal["mine", "all"] = "mine",
    state: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    partition: str | None = None,
    q: str | None = None,
    user: str | None = None,
    sort: str = "-submit_time",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    arrays: Literal["collapsed", "expanded"] = "collapsed",
    recent: Annotated[int, Query(ge=0, le=366)] = 1,
) -> HTMLResponse:
    """Jobs: the person's own, or (admins) everyone's; with those that ended in the last
    ``recent`` days; filtered, sorted, paged."""
    who = page.user
    assert who is not None
    snap = await _snapshot(page, snapshot)
    if not who.is_admin:
        scope = "mine"
    users = [who.username] if scope == "mine" else ([user] if user else [])
    states = _csv(state)
    if recent not in RECENT_DAYS:
        recent = min(RECENT_DAYS, key=lambda d: abs(d - recent))
    finished, recent_error = await run_in_threadpool(
        _recent, adapter, database, snap, who, users, recent
    )
    error = None
    if sort not in {s for s, _ in SORTS} | {s.lstrip("-") for s, _ in SORTS}:
        sort = "-submit_time"
    meta = SnapshotMeta.of(snapshot.health())
    try:
        query = JobQuery(
            user=users,
            state=states,
            partition=[partition] if partition else [],
            name=q or None,
            sort=sort,
            page=page_no,
            limit=limit,
            arrays=arrays,
        )
        result = job_service.list_jobs(snap, query, who, meta, finished=finished)
    except (InvalidInput, ValueError) as exc:
        error = getattr(exc, "message", str(exc))
        query = JobQuery(user=users, sort="-submit_time", limit=limit, arrays=arrays)
        result = job_service.list_jobs(snap, query, who, meta, finished=finished)
    pages = max(1, -(-result.total // result.limit))
    # htmx asks for the results only; restoring history (or a plain visit) needs the page.
    fragment = request.headers.get("HX-Request") and not request.headers.get(
        "HX-History-Restore-Request"
    )
    return page.render(
        "jobs_table.html" if fragment else "jobs.html",
        page_key="jobs",
        result=result,
        pages=pages,
        scope=scope,
        states=states,
        partition=partition or "",
        q=q or "",
        user_filter=user or "",
        sort=sort,
        sorts=SORTS,
        limit=limit,
        page_sizes=PAGE_SIZES,
        arrays=arrays,
        recent=recent,
        recent_choices=RECENT_LABELS,
        recent_error=recent_error,
        status_choices=list(i18n.JOB_STATUS_LABELS),
        partitions=[]
        if for_snapshot(who, snap).hides("partitions")
        else [p.name for p in snap.partitions],
        error=error,
    )


@router.get("/jobs/go", response_class=HTMLResponse)
async def jump_to_job(page: PageDep, id: str = "") -> RedirectResponse:
    """The jump box: ``/jobs/go?id=123`` -> ``/jobs/123`` (a bad id is a 422 page)."""
    job_id = id.strip()
    try:
        job_service.validate_job_id(job_id)
    except PortalError as exc:
        raise _page_error(exc) from None
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


# --- one job ------------------------------------------------------------------------------


def _actions(job: Job | None, who: Principal) -> list[str]:
    """The actions the page offers (Slurm has the last word on each)."""
    if job is None or not _may_act(job, who):
        return []
    status = job.status
    actions = []
    if status not in FINISHED:
        actions.append("cancel")
    if status is JobStatus.QUEUED:
        actions.append("hold")
    if status is JobStatus.QUEUED_HELD:
        actions.append("release")
    if status is JobStatus.RUNNING or status in FINISHED:
        actions.append("requeue")
    return actions


def _tail(runas: Any, who: Principal, detail: JobDetail) -> tuple[OutputChunk | None, str | None]:
    """The last ``OUTPUT_TAIL_BYTES`` of stdout, or why there is none."""
    try:
        first = read_chunk(runas, who, detail, "stdout", 0, 1)
        start = max(0, first.size - OUTPUT_TAIL_BYTES)
        return read_chunk(runas, who, detail, "stdout", start, OUTPUT_TAIL_BYTES), None
    except PortalError as exc:
        return None, exc.message


def priority_text(page: Page, job: Job) -> str | None:
    """A waiting job's priority as a person reads it; None when it means nothing.

    Slurm reports 0 for a held job, and its priority/basic plugin (first come, first
    served) counts down from 4,294,901,760: both are shown as what they mean, not as
    a number. NO_VAL and INFINITE are no priority at all.
    """
    value = job.priority
    if job.status not in WAITING or value is None or value >= _NO_VAL:
        return None
    if value == 0:
        return page.gettext(N_("Held (0): it will not start until released"))
    if value >= _BASIC_PRIORITY_FLOOR:
        return page.gettext(N_("First come, first served"))
    return page.fmt.number(value)


@dataclass(frozen=True, slots=True)
class Progress:
    """A running job's elapsed time against its limit (``limit_seconds`` 0: none)."""

    start: datetime
    elapsed_seconds: int
    limit_seconds: int

    @property
    def percent(self) -> int:
        if not self.limit_seconds:
            return 0
        return min(100, round(100 * self.elapsed_seconds / self.limit_seconds))


def clock(seconds: int) -> str:
    """A duration as Slurm prints one: ``1:05:09``, ``2-03:00:00`` (``job_status.js``
    ticks it in the same form)."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else text


def progress_of(job: Job, now: datetime) -> Progress | None:
    if job.status is not JobStatus.RUNNING or job.start_time is None:
        return None
    elapsed = max(0, int((now - job.start_time).total_seconds()))
    limit = (job.time_limit_minutes or 0) * 60
    return Progress(start=job.start_time, elapsed_seconds=elapsed, limit_seconds=limit)


def _environment(
    adapter: SlurmAdapter, detail: JobDetail, job: Job, who: Principal
) -> dict[str, str] | None:
    """The environment accounting recorded at submission (owner and admins), if any."""
    if detail.files is None:
        return None
    try:
        return adapter.recorded_environment(job.id, as_user=who.username)
    except PortalError:
        return None


def _array_tasks(
    snap: ClusterSnapshot, detail: JobDetail, who: Principal
) -> tuple[list[Job], list[tuple[str, int]]]:
    if detail.job is None or detail.job.array is None:
        return [], []
    parent = detail.job.array.job_id
    tasks = [
        job_service.visible(j, who, snap)
        for j in visible_jobs(snap, for_snapshot(who, snap))
        if j.array is not None and j.array.job_id == parent
    ]
    return tasks[:200], sorted(Counter(j.status.value for j in tasks).items())


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    job_id: str,
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    runas: RunAsDep,
    database: DatabaseDep,
    script: bool = False,
) -> HTMLResponse:
    """One job, from the queue or from accounting: resources, timeline, progress,
    efficiency, output tail, script and environment (``?script=true``), actions."""
    who = page.user
    assert who is not None
    snap = await _snapshot(page, snapshot)
    meta = SnapshotMeta.of(snapshot.health())
    portal_job: Job | None = None
    try:
        job_service.validate_job_id(job_id)
        detail = await run_in_threadpool(
            job_service.find_job, snap, adapter, job_id, who, meta, with_script=script
        )
    except NotFound as exc:
        portal_job = await run_in_threadpool(
            _in_session, database, lambda s: submitted_job(s, who.username, job_id)
        )
        if portal_job is None:
            raise _page_error(exc) from None
        detail = JobDetail(source="portal", snapshot=meta)
    except PortalError as exc:
        raise _page_error(exc) from None
    if detail.job is not None:
        job = detail.job
    elif detail.accounting is not None:
        job = job_from_record(detail.accounting)
    else:
        assert portal_job is not None
        job = portal_job
    may_act = _may_act(job, who)
    tail: OutputChunk | None = None
    tail_error = None
    if may_act and portal_job is None:
        tail, tail_error = await run_in_threadpool(_tail, runas, who, detail)
    elif may_act:
        tail_error = page.gettext(N_("Where this job wrote its output is not known."))
    environment = None
    if script and may_act:
        environment = await run_in_threadpool(_environment, adapter, detail, job, who)
    tasks, task_summary = _array_tasks(snap, detail, who)
    now = datetime.now(UTC)
    return page.render(
        "job.html",
        page_key="jobs",
        detail=detail,
        job=job,
        record=detail.accounting,
        files=detail.files,
        actions=_actions(detail.job, who),
        action_labels=ACTION_LABELS,
        may_act=may_act,
        finished=job.status in FINISHED,
        waiting=job.status in WAITING,
        priority=priority_text(page, job),
        progress=progress_of(job, now),
        tail=tail,
        tail_error=tail_error,
        tasks=tasks,
        task_summary=task_summary,
        show_script=script,
        environment=environment,
        clock=clock,
        now=now,
    )
