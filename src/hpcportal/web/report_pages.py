"""Report pages: ``/reports`` (your reports, their state and downloads), ``/reports/new``
(the form with a preview chart) and ``/reports/schedules``.

The pages read the same services as ``/api/v1/reports``; the forms send JSON to that
API (``reports.js``), so a page never queues anything the API would refuse. The list
is redrawn by htmx from ``/reports/partials/list`` every few seconds while a report is
queued or running, which is how progress moves without a reload. The period presets
are computed here in the reader's time zone, so the form and the CLI name the same
periods.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import DatabaseDep, SettingsDep
from hpcportal.services.reports import generation, periods, schedules
from hpcportal.services.reports.document import ReportKind
from hpcportal.services.reports.ingest import store_status
from hpcportal.services.reports.spec import Dimension, Measure
from hpcportal.web.common import Page, PageDep
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

KIND_LABELS = {
    "job_usage": N_("Job usage"),
    "efficiency": N_("Efficiency"),
    "system": N_("System performance"),
    "user_activity": N_("User activity"),
    "custom": N_("Custom"),
}
PRESET_LABELS = {
    "last_month": N_("Last month"),
    "last_week": N_("Last week"),
    "yesterday": N_("Yesterday"),
    "this_month": N_("This month"),
    "last_30_days": N_("Last 30 days"),
    "last_year": N_("Last year"),
}
STATE_LABELS = {
    "queued": N_("Queued"),
    "running": N_("Generating"),
    "done": N_("Ready"),
    "failed": N_("Failed"),
}
FREQUENCY_LABELS = {"daily": N_("Daily"), "weekly": N_("Weekly (Mondays)"),
                    "monthly": N_("Monthly (the 1st)")}  # fmt: skip
DIMENSION_LABELS = {
    "user": N_("User"), "account": N_("Account"), "partition": N_("Partition"),
    "qos": N_("QOS"), "size_bucket": N_("Job size"), "time": N_("Time"),
}  # fmt: skip
MEASURE_LABELS = {
    "jobs": N_("Jobs"), "started": N_("Jobs started"), "cpu_hours": N_("CPU-hours"),
    "gpu_hours": N_("GPU-hours"), "memory_gb_hours": N_("Memory GB-hours"),
    "wall_hours": N_("Wall hours"), "wait_hours": N_("Wait hours"),
    "requested_hours": N_("Requested hours"), "cpu_time_hours": N_("CPU time hours"),
    "mean_wait_minutes": N_("Mean wait (minutes)"),
    "mean_wall_minutes": N_("Mean run time (minutes)"),
    "cpu_efficiency": N_("CPU efficiency"), "wall_accuracy": N_("Wall-time accuracy"),
    "completed": N_("Completed"), "failed": N_("Failed"), "timed_out": N_("Timed out"),
    "cancelled": N_("Cancelled"), "other": N_("Other"),
}  # fmt: skip
FORMATS = ("pdf", "xlsx", "csv", "json")


def _zone_name(page: Page) -> str:
    """The reader's IANA zone (the page's time zone cookie), else UTC."""
    name = str(getattr(page.fmt.tz, "key", "UTC"))
    try:
        periods.zone(name)
    except Exception:
        return "UTC"
    return name


def _list_context(page: Page, reports: generation.ReportList, everyone: bool) -> dict[str, Any]:
    busy = any(r.state in ("queued", "running") for r in reports.items)
    return {"reports": reports.items, "busy": busy, "everyone": everyone, "formats": FORMATS,
            "state_labels": STATE_LABELS, "kind_labels": KIND_LABELS}  # fmt: skip


async def _listing(page: Page, database: Any, everyone: bool) -> generation.ReportList:
    assert page.user is not None
    return await run_in_threadpool(generation.listing, database, page.user,
                                   everyone=everyone and page.user.is_admin)  # fmt: skip


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(
    page: PageDep, database: DatabaseDep, settings: SettingsDep, all: bool = False
) -> HTMLResponse:
    reports = await _listing(page, database, all)
    store = await run_in_threadpool(store_status, database, settings, datetime.now(UTC))
    return page.render("reports.html", page_key="reports", store=store.items,
                       **_list_context(page, reports, all))  # fmt: skip


@router.get("/reports/partials/list", response_class=HTMLResponse)
async def reports_list_partial(
    page: PageDep, database: DatabaseDep, all: bool = False
) -> HTMLResponse:
    """The list alone, for htmx to swap in while reports are being generated."""
    reports = await _listing(page, database, all)
    return page.render("reports_list.html", **_list_context(page, reports, all))


def _form_context(page: Page) -> dict[str, Any]:
    tz = _zone_name(page)
    now = datetime.now(UTC)
    presets = {name: {"start": p.start.isoformat(), "end": p.end.isoformat()}
               for name in periods.PRESETS for p in [periods.preset(name, tz, now)]}  # fmt: skip
    return {
        "kinds": [(k, KIND_LABELS[k]) for k in get_args(ReportKind)],
        "presets": PRESET_LABELS, "preset_periods": presets, "time_zone": tz,
        "dimensions": [(d, DIMENSION_LABELS[d]) for d in get_args(Dimension)],
        "measures": [(m, MEASURE_LABELS[m]) for m in get_args(Measure)],
        "formats": FORMATS, "frequencies": FREQUENCY_LABELS, "zones": periods.zone_names(),
    }  # fmt: skip


@router.get("/reports/new", response_class=HTMLResponse)
async def new_report_page(page: PageDep) -> HTMLResponse:
    return page.render("report_new.html", page_key="reports", **_form_context(page))


@router.get("/reports/schedules", response_class=HTMLResponse)
async def schedules_page(page: PageDep, database: DatabaseDep, all: bool = False) -> HTMLResponse:
    assert page.user is not None
    found = await run_in_threadpool(schedules.listing, database, page.user,
                                    everyone=all and page.user.is_admin)  # fmt: skip
    return page.render("report_schedules.html", page_key="reports", schedules=found.items,
                       kind_labels=KIND_LABELS, everyone=all, **_form_context(page))  # fmt: skip
