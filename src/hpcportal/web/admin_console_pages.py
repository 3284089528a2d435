"""The admin area's scheduler health (``/admin/scheduler``) and audit (``/admin/audit``).

Read-only pages, no script: the scheduler page shows the newest ``sdiag`` sample the
leader stored, small server-drawn SVG charts of the samples of the last hours (cycle
times; agent queue and server threads) with the same figures in a table, the heaviest
RPC users and message types, and pending reasons by partition from the snapshot. The
audit page lists the audit log with filters (who, kind, target, outcome, since) a page at
a time, with each applied admin change's reason and the commands that ran. Only members
of the portal's admin group see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from hpcportal.composition import services_of
from hpcportal.dependencies import DatabaseDep, SettingsDep, SnapshotDep
from hpcportal.services.admin import audit as admin_audit
from hpcportal.services.admin import scheduler
from hpcportal.services.admin.audit import AuditFilter
from hpcportal.services.admin.scheduler import HistoryPoint
from hpcportal.web.admin_forms import require_admin, shown
from hpcportal.web.common import PageDep, current_snapshot
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)
HOURS = (1, 6, 24, 72, 168)
OUTCOMES = (("ok", N_("Done")), ("refused", N_("Refused")), ("error", N_("Failed")))
PER_PAGE = 50
WIDTH, HEIGHT = 600, 160


@dataclass(frozen=True)
class Line:
    label: str
    css: str
    points: str
    last: int | None


@dataclass(frozen=True)
class Chart:
    """One SVG chart: polylines in a WIDTH x HEIGHT box, 0 at the bottom."""

    title: str
    unit: str
    top: int
    lines: list[Line]


def chart(
    title: str, unit: str, history: Sequence[HistoryPoint], series: Sequence[tuple[str, str, str]]
) -> Chart:
    """Polylines of ``series`` (label, css class, field) over ``history``'s time span."""
    values = [[getattr(p, field) for p in history] for _label, _css, field in series]
    top = max([v for row in values for v in row if v is not None] + [1])
    if history:
        start, end = history[0].at.timestamp(), history[-1].at.timestamp()
    else:
        start = end = 0.0
    span = (end - start) or 1.0
    lines = []
    for (label, css, _field), row in zip(series, values, strict=True):
        points = " ".join(
            f"{(p.at.timestamp() - start) / span * WIDTH:.1f},{HEIGHT - v / top * HEIGHT:.1f}"
            for p, v in zip(history, row, strict=True)
            if v is not None
        )
        lines.append(Line(label, css, points, row[-1] if row else None))
    return Chart(title, unit, top, lines)


@router.get("/admin/scheduler", response_class=HTMLResponse)
async def admin_scheduler_page(
    request: Request,
    page: PageDep,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    settings: SettingsDep,
    hours: int = 6,
) -> HTMLResponse:
    require_admin(page)
    if hours not in HOURS:
        hours = 6
    snap = await current_snapshot(page, snapshot)
    sampler = services_of(request).sdiag_sampler
    error = sampler.last_error if sampler is not None else None
    health = await run_in_threadpool(scheduler.health, database, snap, settings, error)
    since = datetime.now(UTC) - timedelta(hours=hours)
    history = await run_in_threadpool(scheduler.history, database, since)
    charts = [
        chart(
            page.gettext(N_("Scheduler cycle times")),
            "µs",
            history,
            [
                (page.gettext(N_("Main, last")), "line-main", "schedule_cycle_last"),
                (page.gettext(N_("Backfill, last")), "line-backfill", "backfill_cycle_last"),
            ],
        ),
        chart(
            page.gettext(N_("Agent queue and server threads")),
            "",
            history,
            [
                (page.gettext(N_("Agent queue size")), "line-main", "agent_queue_size"),
                (page.gettext(N_("Server threads")), "line-backfill", "server_thread_count"),
            ],
        ),
    ]
    latest = health.latest
    busiest = sorted(latest.rpcs_by_type, key=lambda r: -r.total_us)[:15] if latest else []
    return page.render(
        "admin_scheduler.html",
        page_key="admin",
        health=health,
        stats=latest,
        history=history,
        charts=charts,
        width=WIDTH,
        height=HEIGHT,
        hours=hours,
        hour_choices=HOURS,
        busiest=busiest,
    )


@router.get("/admin/audit", response_class=HTMLResponse)
async def admin_audit_page(
    page: PageDep,
    database: DatabaseDep,
    user: str = "",
    kind: str = "admin.",
    target: str = "",
    outcome: str = "",
    since: str = "",
    page_number: Annotated[int, Query(alias="page")] = 1,
) -> HTMLResponse:
    require_admin(page)
    form = {"user": user, "kind": kind, "target": target, "outcome": outcome, "since": since}
    error = None
    try:
        where = AuditFilter.model_validate(
            {
                "user": user.strip() or None,
                "kind": kind.strip() or None,
                "target": target.strip() or None,
                "outcome": outcome or None,
                "since": _since(since) if since.strip() else None,
            }
        )
    except (ValidationError, ValueError):
        where = AuditFilter(kind="admin.")
        error = page.gettext(
            N_("Check the filters: since is a date and time such as 2026-12-03 06:00.")
        )
    number = max(1, min(page_number, 1_000_000))
    rows = await run_in_threadpool(admin_audit.audit_rows, database, where, number, PER_PAGE)
    context: dict[str, Any] = {
        "rows": rows,
        "form": form,
        "outcomes": OUTCOMES,
        "outcome_label": dict(OUTCOMES),
        "error": error,
        "shown": shown,
    }
    return page.render(
        "admin_audit.html", status=422 if error else 200, page_key="admin", **context
    )


def _since(text: str) -> datetime:
    """``2026-12-03``, ``2026-12-03 06:00`` or ``2026-12-03T06:00`` (UTC if no zone)."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
