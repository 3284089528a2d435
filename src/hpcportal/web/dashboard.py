"""The dashboard (``/``): the person's widgets, and one widget's content for htmx."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import DatabaseDep, SnapshotDep
from hpcportal.services import dashboards as dashboard_service
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta, summarize
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import JobQuery
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.services.visibility import for_snapshot
from hpcportal.web import i18n
from hpcportal.web.common import Page, PageDep, PageError, current_snapshot, in_session
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)


def _my_jobs(snap: ClusterSnapshot, who: Principal, meta: SnapshotMeta, limit: int) -> Any:
    query = JobQuery(user=[who.username], sort="-submit_time", limit=limit, arrays="collapsed")
    return job_service.list_jobs(snap, query, who, meta)


def _widget_data(page: Page, snap: ClusterSnapshot, snapshot: SnapshotService) -> dict[str, Any]:
    assert page.user is not None
    health = snapshot.health()
    meta = SnapshotMeta.of(health)
    vis = for_snapshot(page.user, snap)
    return {
        "summary": summarize(snap, health, vis),
        "my_jobs": _my_jobs(snap, page.user, meta, 10),
        "nodes": [] if vis.hides("nodes") else sorted(snap.nodes, key=lambda n: n.name),
        "partitions": [p for p in snap.partitions if not p.hidden and not vis.hides("partitions")],
    }


@router.get("/", response_class=HTMLResponse)
async def dashboard(page: PageDep, snapshot: SnapshotDep, database: DatabaseDep) -> HTMLResponse:
    assert page.user is not None
    who = page.user
    snap = await current_snapshot(page, snapshot)
    layout = await run_in_threadpool(
        in_session, database, lambda s: dashboard_service.get_layout(s, who)
    )
    present = {w.type for w in layout.widgets}
    return page.render(
        "dashboard.html",
        page_key="dashboard",
        layout=layout,
        missing=[t for t in dashboard_service.WIDGET_TYPES if t not in present],
        presets=dashboard_service.presets(),
        preset_titles=i18n.PRESET_TITLES,
        data=_widget_data(page, snap, snapshot),
    )


@router.get("/partials/widgets/{kind}", response_class=HTMLResponse)
async def widget_partial(kind: str, page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    """One widget's content, for a widget just added to the dashboard (htmx)."""
    if kind not in dashboard_service.WIDGET_TYPES:
        raise PageError(404, page.gettext(N_("No such widget.")))
    snap = await current_snapshot(page, snapshot)
    return page.render("widget.html", kind=kind, data=_widget_data(page, snap, snapshot))
