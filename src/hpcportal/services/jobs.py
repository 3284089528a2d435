"""Listing and finding jobs in the snapshot, with what each user may see.

Which jobs a person sees is Slurm's decision (``PrivateData``, applied by
``services.visibility``): without it, everyone sees every job's public fields, as
``squeue`` shows them. Of the jobs a person sees, only the owner and admins see the
private part (paths, command, comment) and the script. Jobs slurmctld has already
forgotten (after ``MinJobAge``) are looked up in accounting, under slurmdbd's rules.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from hpcportal.errors import InvalidInput, NotFound, SlurmError
from hpcportal.limits import SLURM_ID_MAX
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.finished_jobs import (
    JobFiles,
    files_of_queued,
    job_from_record,
    recorded_files,
)
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.visibility import Visibility, for_accounting, for_snapshot, visible_jobs
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JOB_STATES, JobStatus

SortKey = Literal[
    "id", "-id", "submit_time", "-submit_time", "start_time", "-start_time", "priority",
    "-priority", "name", "-name", "user", "-user", "state", "-state", "partition", "-partition",
]  # fmt: skip

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SORTS: dict[str, Callable[[Job], Any]] = {
    "id": lambda j: (j.array.job_id if j.array else j.job_id, _task_order(j)),
    "submit_time": lambda j: j.submit_time or _EPOCH,
    "start_time": lambda j: j.start_time or _EPOCH,
    "priority": lambda j: j.priority or 0,
    "name": lambda j: j.name.lower(),
    "user": lambda j: j.user,
    "state": lambda j: j.state,
    "partition": lambda j: j.partition,
}
# ASCII digits only: ``\d`` alone would also take "١٢٣", which Slurm does not.
_JOB_ID = re.compile(r"^\d+(_(\d+|\[[0-9,%\-:]+\]))?$", re.ASCII)


def _task_order(job: Job) -> int:
    if job.array is None or job.array.task_id is None:
        return -1
    return job.array.task_id


class JobPage(BaseModel):
    items: list[Job]
    total: int
    page: int
    limit: int
    array_summaries: dict[str, dict[str, int]] | None = Field(
        default=None,
        description="In collapsed listings: for each array row's id, its tasks by status.",
    )
    snapshot: SnapshotMeta


class JobDetail(BaseModel):
    job: Job | None = None
    accounting: AccountingRecord | None = None
    script: str | None = None
    #: Where the job reads and writes, for its owner and admins: patterns expanded.
    files: JobFiles | None = None
    #: ``portal``: neither Slurm nor accounting knows the job any more; the page shows
    #: what the portal recorded when it submitted it (``services.portal_jobs``).
    source: Literal["snapshot", "accounting", "portal"]
    snapshot: SnapshotMeta


class JobQuery(BaseModel):
    user: list[str] = []
    state: list[str] = []
    partition: list[str] = []
    account: list[str] = []
    name: str | None = None
    sort: SortKey = "id"
    page: int = Field(default=1, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)
    arrays: Literal["expanded", "collapsed"] = "expanded"


def parse_states(values: Iterable[str]) -> frozenset[JobStatus | str]:
    """Accept portal statuses (``running``) and Slurm states (``PENDING``); else 422."""
    wanted: set[JobStatus | str] = set()
    for value in values:
        if value in JobStatus.__members__.values():
            wanted.add(JobStatus(value))
        elif value.upper() in JOB_STATES:
            wanted.add(value.upper())
        else:
            allowed = ", ".join(s.value for s in JobStatus)
            raise InvalidInput(
                f"Unknown job state {value!r}. Use one of: {allowed}, or a Slurm state name."
            )
    return frozenset(wanted)


def split_csv(values: Iterable[str]) -> list[str]:
    """Filter values as people write them: ``?user=a&user=b`` or ``?user=a,b``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def can_see_private(job: Job | AccountingRecord, who: Principal) -> bool:
    """The owner-or-admin check: who sees a job's private part and may act on it."""
    return who.owns_or_admin(job.user)


def cpu_hours(record: AccountingRecord) -> float:
    """CPU-hours a finished (or running) job took: allocated CPUs x elapsed time
    (the CPUs asked for when accounting recorded no allocation)."""
    cpus = record.tres_allocated.get("cpu") or record.cpus_requested or 0
    return cpus * record.elapsed_seconds / 3600


def visible(job: Job, who: Principal, snap: ClusterSnapshot | None = None) -> Job:
    """The job as ``who`` may see it: without its private part unless theirs.

    With a snapshot, the public copy is made once per job and snapshot, so listing
    other people's jobs costs a lookup rather than a copy per request.
    """
    if job.private is None or can_see_private(job, who):
        return job
    if snap is None:
        return job.model_copy(update={"private": None})
    public: dict[int, Job] = snap.memo("public_copies", dict)
    key = id(job)
    copy = public.get(key)
    if copy is None:
        copy = public[key] = job.model_copy(update={"private": None})
    return copy


def _sorted(snap: ClusterSnapshot, sort: str, vis: Visibility) -> list[Job]:
    """The jobs ``vis`` sees in ``sort`` order, once per snapshot and visibility."""
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    jobs = visible_jobs(snap, vis)
    result: list[Job] = snap.memo(
        f"sorted:{sort}:{vis.jobs_key}", lambda: sorted(jobs, key=_SORTS[key], reverse=reverse)
    )
    return result


def _matches(q: JobQuery, states: frozenset[JobStatus | str]) -> Callable[[Job], bool]:
    users, parts, accounts = set(q.user), set(q.partition), set(q.account)
    name = q.name.lower() if q.name else None

    def match(j: Job) -> bool:
        return (
            (not users or j.user in users)
            and (not states or j.status in states or j.state in states)
            and (not parts or j.partition in parts)
            and (not accounts or j.account in accounts)
            and (name is None or name in j.name.lower())
        )

    return match


def _public_record(record: AccountingRecord) -> AccountingRecord:
    return record.model_copy(update={"work_dir": None, "comment": None})


def list_jobs(
    snap: ClusterSnapshot,
    q: JobQuery,
    who: Principal,
    meta: SnapshotMeta,
    *,
    finished: Sequence[Job] = (),
) -> JobPage:
    """A page of the jobs ``who`` sees; ``finished`` (from accounting, already limited
    to what ``who`` may see) are added where slurmctld no longer lists them."""
    states = parse_states(q.state)
    jobs = _sorted(snap, q.sort, for_snapshot(who, snap))
    forgotten = [j for j in finished if j.id not in snap.jobs_by_id]
    if forgotten:
        key = q.sort.lstrip("-")
        jobs = sorted([*jobs, *forgotten], key=_SORTS[key], reverse=q.sort.startswith("-"))
    if q.user or states or q.partition or q.account or q.name:
        match = _matches(q, states)
        jobs = [j for j in jobs if match(j)]
    summaries: dict[str, dict[str, int]] | None = None
    if q.arrays == "collapsed":
        jobs, summaries = _collapse(jobs)
    start = (q.page - 1) * q.limit
    rows = [visible(j, who, snap) for j in jobs[start : start + q.limit]]
    if summaries is not None:
        summaries = {r.id: summaries[r.id] for r in rows if r.id in summaries}
    return JobPage(
        items=rows,
        total=len(jobs),
        page=q.page,
        limit=q.limit,
        array_summaries=summaries,
        snapshot=meta,
    )


def _collapse(jobs: list[Job]) -> tuple[list[Job], dict[str, dict[str, int]]]:
    """One row per array (its first record in the current order), with task counts."""
    counts: dict[int, Counter[str]] = {}
    for j in jobs:
        if j.array is not None:
            c = counts.setdefault(j.array.job_id, Counter())
            if j.array.task_id is None and j.array.pending_tasks:
                c[j.status.value] += count_indices(j.array.pending_tasks)
            else:
                c[j.status.value] += 1
    rows: list[Job] = []
    seen: set[int] = set()
    for j in jobs:
        if j.array is None:
            rows.append(j)
        elif j.array.job_id not in seen:
            seen.add(j.array.job_id)
            rows.append(j.model_copy(update={"id": str(j.array.job_id)}))
    return rows, {str(parent): dict(c) for parent, c in counts.items()}


def count_indices(spec: str) -> int:
    """How many tasks an array spec names: ``"0-5%2"`` -> 6, ``"1,3,5-9:2"`` -> 5."""
    total = 0
    for part in spec.split("%", 1)[0].split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
            total += len(range(first, last + 1, int(step or 1)))
        except ValueError:
            continue
    return total


def validate_job_id(job_id: str) -> str:
    """``123``, ``123_4`` or ``123_[1-3]``, every number within Slurm's 32 bits."""
    if not _JOB_ID.fullmatch(job_id):
        raise InvalidInput(f"{job_id[:40]!r} is not a job id (like 123 or 123_4).")
    if any(int(number) > SLURM_ID_MAX for number in re.findall(r"[0-9]+", job_id)):
        raise InvalidInput(f"{job_id[:40]!r} is not a job id: Slurm's ids stop at {SLURM_ID_MAX}.")
    return job_id


def find_job(
    snap: ClusterSnapshot,
    adapter: SlurmAdapter,
    job_id: str,
    who: Principal,
    meta: SnapshotMeta,
    *,
    with_script: bool = False,
) -> JobDetail:
    """A job from the snapshot, else from slurmctld, else from accounting; or 404.

    A job ``who`` may not see (``PrivateData=jobs``) is looked for in accounting, whose
    own rules then decide, and is otherwise "not found" like a job that never existed.
    """
    validate_job_id(job_id)
    # Newer than the snapshot (just submitted)? Ask slurmctld for that one job.
    job = snap.jobs_by_id.get(job_id) or adapter.job(job_id)
    if job is not None and for_snapshot(who, snap).sees_job(job):
        script = None
        if with_script and can_see_private(job, who):
            script = adapter.job_script(job.job_id, as_user=who.username)
        shown = visible(job, who, snap)
        return JobDetail(
            job=shown,
            script=script,
            files=files_of_queued(shown),
            source="snapshot",
            snapshot=meta,
        )
    return find_in_accounting(adapter, job_id, who, meta, with_script=with_script)


def find_in_accounting(
    adapter: SlurmAdapter,
    job_id: str,
    who: Principal,
    meta: SnapshotMeta,
    *,
    with_script: bool = False,
) -> JobDetail:
    """A job slurmctld has forgotten (after ``MinJobAge``), from ``sacct``.

    For its owner and admins, also its files and (``with_script``) its script, from
    what accounting recorded, asked as ``who``; if that cannot be read, the job is
    still shown, without them.
    """
    # A window on whole hours, so the same question asked again is the adapter's cached
    # answer (a page and its output and efficiency requests ask it in turn).
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    start, end = hour - timedelta(days=365), hour + timedelta(hours=1)
    records = adapter.accounting(start, end, job_ids=[job_id])
    vis = for_accounting(who, adapter)
    # Job ids can repeat over a cluster's life (a reset counter); take the newest.
    matches = [
        r for r in records if (r.id == job_id or str(r.job_id) == job_id) and vis.sees_job(r)
    ]
    record = max(matches, key=lambda r: r.submit_time or _EPOCH, default=None)
    if record is None:
        raise NotFound(f"No job {job_id} in the queue or in accounting.")
    if not can_see_private(record, who):
        return JobDetail(accounting=_public_record(record), source="accounting", snapshot=meta)
    files, script = None, None
    try:
        files, script = recorded_files(adapter, job_from_record(record), who)
    except SlurmError as exc:  # shown without them; the page says they are unknown
        log.warning("What accounting recorded of job %s could not be read: %s", job_id, exc)
    return JobDetail(
        accounting=record,
        script=script if with_script else None,
        files=files,
        source="accounting",
        snapshot=meta,
    )


class AccountingPage(BaseModel):
    items: list[AccountingRecord]
    total: int
    page: int
    limit: int
    start: datetime
    end: datetime


class AccountingQuery(BaseModel):
    start: datetime
    end: datetime
    user: list[str] = []
    account: list[str] = []
    partition: list[str] = []
    state: list[str] = []
    page: int = Field(default=1, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)


MAX_ACCOUNTING_DAYS = 366


def list_accounting(adapter: SlurmAdapter, q: AccountingQuery, who: Principal) -> AccountingPage:
    """Jobs from accounting over a range, newest first.

    Slurm state names go to sacct; portal statuses are filtered here. Records are kept
    to what ``sacct`` run as ``who`` returns (slurmdbd's ``PrivateData=jobs``), and to
    the users asked for: 22.05's ``sacct --json`` ignores ``--user``.
    """
    if q.start >= q.end:
        raise InvalidInput("start must be before end.")
    if q.end - q.start > timedelta(days=MAX_ACCOUNTING_DAYS):
        raise InvalidInput(f"The range may span at most {MAX_ACCOUNTING_DAYS} days.")
    wanted = parse_states(q.state)
    slurm_states = sorted(s for s in wanted if not isinstance(s, JobStatus))
    statuses = {s for s in wanted if isinstance(s, JobStatus)}
    try:
        start, end = (t.astimezone(UTC).replace(tzinfo=None) for t in (q.start, q.end))
    except OverflowError:  # 0001-01-01T00:00+09:00 is in the year 0 in UTC
        raise InvalidInput("Dates must lie between the years 1 and 9999 in UTC.") from None
    records = adapter.accounting(
        start,
        end,
        users=q.user,
        accounts=q.account,
        partitions=q.partition,
        states=slurm_states if not statuses else (),
    )
    vis = for_accounting(who, adapter)
    users = set(q.user)
    records = [r for r in records if vis.sees_job(r) and (not users or r.user in users)]
    if wanted:
        records = [r for r in records if r.status in statuses or r.state in wanted]
    records = sorted(records, key=lambda r: (r.submit_time or _EPOCH, r.job_id), reverse=True)
    records = [
        r if can_see_private(r, who) else r.model_copy(update={"work_dir": None, "comment": None})
        for r in records
    ]
    first = (q.page - 1) * q.limit
    return AccountingPage(
        items=records[first : first + q.limit],
        total=len(records),
        page=q.page,
        limit=q.limit,
        start=q.start,
        end=q.end,
    )


def all_accounting(
    adapter: SlurmAdapter, query: AccountingQuery, who: Principal, max_records: int
) -> tuple[AccountingPage, list[AccountingRecord]]:
    """The first page of ``query`` and the records of it and the pages after, up to
    ``max_records`` (charts over a range read them all, not one page)."""
    first = list_accounting(adapter, query, who)
    records = list(first.items)
    page_no = 1
    while len(records) < min(first.total, max_records):
        page_no += 1
        more = list_accounting(adapter, query.model_copy(update={"page": page_no}), who)
        if not more.items:
            break
        records.extend(more.items)
    return first, records
