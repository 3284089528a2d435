"""The admin area's monitoring page (``/admin/monitoring``): Prometheus' health, its
targets and their health, the alerts firing and the idle-GPU list, from the same
service as ``GET /api/v1/monitoring/overview``. No script; Prometheus down or not
configured still renders the page, saying why."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import DatabaseDep, MonitoringDep
from hpcportal.services.monitoring import idle_gpu
from hpcportal.services.monitoring.overview import overview
from hpcportal.web.admin_forms import require_admin
from hpcportal.web.common import PageDep

router = APIRouter(include_in_schema=False)


@router.get("/admin/monitoring", response_class=HTMLResponse)
async def admin_monitoring_page(
    page: PageDep, database: DatabaseDep, monitoring: MonitoringDep
) -> HTMLResponse:
    require_admin(page)
    idle = await run_in_threadpool(idle_gpu.listing, database)
    return page.render(
        "admin_monitoring.html", page_key="admin", view=await overview(monitoring, idle.items)
    )
