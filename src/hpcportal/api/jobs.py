"""Read API for jobs: the live queue from the snapshot, and history from accounting."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.params import PageNumber, PageSize
from hpcportal.api.responses import ModelResponse
from hpcportal.dependencies import AdapterDep, CurrentUser, SnapshotDep, strict_query
from hpcportal.errors import InvalidInput
from hpcportal.limits import in_utc
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.jobs import (
    AccountingPage,
    AccountingQuery,
    JobDetail,
    JobPage,
    JobQuery,
    SortKey,
)

router = APIRouter(tags=["jobs"])

CsvList = Annotated[list[str], Query()]


@router.get(
    "/jobs",
    response_model=JobPage,
    response_class=ModelResponse,
    dependencies=[strict_query(*JobQuery.model_fields)],
)
async def list_jobs(
    who: CurrentUser,
    snapshot: SnapshotDep,
    user: CsvList = [],  # noqa: B006 (FastAPI copies defaults)
    state: CsvList = [],  # noqa: B006
    partition: CsvList = [],  # noqa: B006
    account: CsvList = [],  # noqa: B006
    name: str | None = None,
    sort: SortKey = "id",
    page: PageNumber = 1,
    limit: PageSize = 100,
    arrays: Literal["expanded", "collapsed"] = "expanded",
) -> ModelResponse:
    """Jobs in the queue (and recently finished), filtered, sorted and paged.

    Filters take several values, comma-separated or repeated. ``state`` takes portal
    statuses (``queued``, ``running``...) or Slurm state names (``PENDING``...).
    """
    query = JobQuery(
        user=job_service.split_csv(user),
        state=job_service.split_csv(state),
        partition=job_service.split_csv(partition),
        account=job_service.split_csv(account),
        name=name,
        sort=sort,
        page=page,
        limit=limit,
        arrays=arrays,
    )
    snap = await snapshot.current()
    result = job_service.list_jobs(snap, query, who, SnapshotMeta.of(snapshot.health()))
    return ModelResponse(result)


@router.get("/jobs/{job_id}", response_model=JobDetail, dependencies=[strict_query("script")])
async def get_job(
    job_id: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    script: bool = False,
) -> JobDetail:
    """One job: from the queue if slurmctld still knows it, else from accounting.

    ``script=true`` adds the batch script for the owner (read as the owner, so Slurm
    decides) and admins.
    """
    job_service.validate_job_id(job_id)
    snap = await snapshot.current()
    meta = SnapshotMeta.of(snapshot.health())
    return await run_in_threadpool(
        job_service.find_job, snap, adapter, job_id, who, meta, with_script=script
    )


def _as_datetime(value: datetime | date | None, default: datetime, *, end: bool) -> datetime:
    """In UTC, from 1970 (accounting has nothing earlier, and "7 days before" stays in
    range) to the year 9999."""
    if value is None:
        return default
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    try:
        return in_utc(value)
    except ValueError as exc:
        raise InvalidInput(f"{'end' if end else 'start'} {exc}.") from None


@router.get(
    "/accounting/jobs",
    response_model=AccountingPage,
    dependencies=[
        strict_query("start", "end", "user", "account", "partition", "state", "page", "limit")
    ],
)
async def accounting_jobs(
    who: CurrentUser,
    adapter: AdapterDep,
    start: datetime | date | None = None,
    end: datetime | date | None = None,
    user: CsvList = [],  # noqa: B006
    account: CsvList = [],  # noqa: B006
    partition: CsvList = [],  # noqa: B006
    state: CsvList = [],  # noqa: B006
    page: PageNumber = 1,
    limit: PageSize = 100,
) -> AccountingPage:
    """Jobs from Slurm's accounting database (``sacct``) over a date range (default 7 days).

    Dates are UTC; a bare date means that whole day. ``state`` takes portal statuses or
    Slurm state names, like ``/jobs``.
    """
    end_at = _as_datetime(end, datetime.now(UTC), end=True)
    query = AccountingQuery(
        start=_as_datetime(start, end_at - timedelta(days=7), end=False),
        end=end_at,
        user=job_service.split_csv(user),
        account=job_service.split_csv(account),
        partition=job_service.split_csv(partition),
        state=job_service.split_csv(state),
        page=page,
        limit=limit,
    )
    return await run_in_threadpool(job_service.list_accounting, adapter, query, who)
