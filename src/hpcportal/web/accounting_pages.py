"""Accounting (``/accounting``): usage over a date range, charts per day and the jobs,
the person's own or (admins) anyone's, read through the same service as the API's
``/accounting/jobs`` (``services.jobs``: visibility, CPU-hours)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import AdapterDep
from hpcportal.errors import PortalError
from hpcportal.services import jobs as job_service
from hpcportal.services.jobs import AccountingQuery
from hpcportal.slurm.models import AccountingRecord
from hpcportal.web.common import PageDep, page_error
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

#: Accounting charts read at most this many records (pages of 1000).
ACCOUNTING_MAX_RECORDS: Final = 20_000
CHART_STATUSES: Final = ("completed", "failed", "cancelled", "timeout", "running", "other")


def _day_range(start: date, end: date) -> list[date]:
    days = (end - start).days
    return [start + timedelta(days=i) for i in range(max(0, days) + 1)]


def accounting_series(
    records: list[AccountingRecord], start: date, end: date, tz: Any
) -> dict[str, Any]:
    """Per day (in the viewer's time zone): jobs by final state, and CPU-hours allocated.

    A job counts on the day it ended (running ones on the day they started, queued
    ones on the day they were submitted); CPU-hours are allocated CPUs x elapsed time.
    """
    days = _day_range(start, end)
    index = {d: i for i, d in enumerate(days)}
    jobs = {s: [0] * len(days) for s in CHART_STATUSES}
    cpu_hours = [0.0] * len(days)
    for r in records:
        when = r.end_time or r.start_time or r.submit_time
        if when is None:
            continue
        i = index.get(when.astimezone(tz).date())
        if i is None:
            continue
        status = r.status.value if r.status.value in CHART_STATUSES else "other"
        jobs[status][i] += 1
        cpu_hours[i] += job_service.cpu_hours(r)
    return {
        "days": [d.isoformat() for d in days],
        "jobs": jobs,
        "cpu_hours": [round(v, 3) for v in cpu_hours],
    }


@router.get("/accounting", response_class=HTMLResponse)
async def accounting_page(
    page: PageDep,
    adapter: AdapterDep,
    start: str | None = None,
    end: str | None = None,
    scope: Literal["mine", "all"] = "mine",
    user: str | None = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Usage over a date range: charts per day and the jobs, yours or (admins) anyone's."""
    who = page.user
    assert who is not None
    if not who.is_admin:
        scope = "mine"
    tz = page.fmt.tz
    today = datetime.now(tz).date()
    error = None
    try:
        end_day = date.fromisoformat(end) if end else today
        start_day = date.fromisoformat(start) if start else end_day - timedelta(days=6)
    except (ValueError, OverflowError):  # not a date, or 0001-01-01 minus 6 days
        error = page.gettext(N_("Give dates as YYYY-MM-DD."))
        end_day, start_day = today, today - timedelta(days=6)
    if start_day > end_day:
        error = page.gettext(N_("The start date must not be after the end date."))
        start_day = end_day
    if (end_day - start_day).days >= job_service.MAX_ACCOUNTING_DAYS:
        error = page.gettext(N_("Choose at most %(days)s days.")) % {
            "days": job_service.MAX_ACCOUNTING_DAYS
        }
        start_day = end_day - timedelta(days=job_service.MAX_ACCOUNTING_DAYS - 1)
    users = [who.username] if scope == "mine" else ([user] if user else [])
    query = AccountingQuery(
        start=datetime.combine(start_day, time.min, tzinfo=tz),
        end=datetime.combine(end_day, time.max, tzinfo=tz),
        user=users,
        page=1,
        limit=1000,
    )
    try:
        first, records = await run_in_threadpool(
            job_service.all_accounting, adapter, query, who, ACCOUNTING_MAX_RECORDS
        )
    except PortalError as exc:
        raise page_error(exc) from None
    per_page = 50
    shown = records[(page_no - 1) * per_page : page_no * per_page]
    totals = Counter(r.status.value for r in records)
    cpu_hours = sum(job_service.cpu_hours(r) for r in records)
    return page.render(
        "accounting.html",
        page_key="accounting",
        start=start_day.isoformat(),
        end=end_day.isoformat(),
        scope=scope,
        user_filter=user or "",
        error=error,
        total=first.total,
        truncated=first.total > len(records),
        records=shown,
        pages=max(1, -(-len(records) // per_page)),
        page_no=page_no,
        totals=sorted(totals.items()),
        cpu_hours=cpu_hours,
        series=accounting_series(records, start_day, end_day, tz),
        chart_statuses=CHART_STATUSES,
        chart_labels={
            s: page.job_label(s) if s != "other" else page.gettext(N_("Other"))
            for s in CHART_STATUSES
        },
    )


# The file manager (``/files``) is in ``web/file_pages.py``.
