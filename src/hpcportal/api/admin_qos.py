"""The admin console's QoS API: list, plan, apply (revert is ``/admin/changes``).

Thin, like ``api/admin.py``: the portal's admin role (``AdminUser``) decides who sees
these routes; the change runs as the administrator's own Unix user, so slurmdbd
decides whether it happens (403 with Slurm's reason otherwise). A plan reads the QoS
from slurmdbd, so it runs in a worker thread; apply re-plans and, given the argv the
person saw as ``expect`` (required), answers 409 instead of running something else.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from hpcportal.dependencies import AdapterDep, AdminUser, ClientAddress, DatabaseDep, SnapshotDep
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin import qos as admin_qos
from hpcportal.services.admin.flow import apply_checked, plan_of, runner
from hpcportal.services.admin.plan import Applied, ApplyBody, PlanView
from hpcportal.services.admin.qos import QosRequest, QosRow

router = APIRouter(prefix="/admin/qos", tags=["admin"])


class QosApply(ApplyBody):
    """A QoS change to apply: the change, why, and the argv the person saw.

    ``expect`` is required here: a QoS change (a delete above all) runs only as the
    plan that was shown, never from a body alone."""

    change: QosRequest
    expect: list[list[str]]


@router.get("", response_model=list[QosRow])
async def qos_list(_: AdminUser, adapter: AdapterDep, snapshot: SnapshotDep) -> list[QosRow]:
    """Every QoS's values as slurmdbd has them now, with its pending and running jobs."""
    snap = await snapshot.current()
    return await run_in_threadpool(admin_qos.qos_rows, adapter, snap)


@router.post("/plan", response_model=PlanView)
async def plan_qos_change(
    change: QosRequest, _: AdminUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> PlanView:
    """The sacctmgr command a create, modify or delete would run, the values before
    and after, the jobs under the QoS and the pending ones it would release or hold."""
    return PlanView.of(await plan_of(admin_qos.plan_request, adapter, snapshot, change))


@router.post("/apply", response_model=Applied)
async def apply_qos_change(
    body: QosApply,
    who: AdminUser,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Apply a QoS change as you, with a reason (audited; revertible once through
    ``POST /admin/changes/{id}/revert``)."""
    plan = await plan_of(admin_qos.plan_request, adapter, snapshot, body.change)
    run = runner(
        admin_plan.apply, adapter.admin, database, who=who, why=body.reason, address=address
    )
    applied = await apply_checked(plan, body.expect, run)
    adapter.cache.clear()  # /qos reads sacctmgr through the short cache
    return applied
