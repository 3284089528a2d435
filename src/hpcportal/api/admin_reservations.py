"""The admin console's reservations API: list (with the calendar), plan, apply
(revert is ``/admin/changes``).

Thin, like ``api/admin_qos.py``: the portal's admin role (``AdminUser``) decides who
sees these routes; the change runs as the administrator's own Unix user, so slurmctld
decides whether it happens (403 with Slurm's reason otherwise). A plan reads the
reservations from slurmctld, so it runs in a worker thread; apply re-plans and, given
the argv the person saw as ``expect`` (required), answers 409 instead of running
something else.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.params import Moment
from hpcportal.dependencies import (
    AdapterDep,
    AdminUser,
    ClientAddress,
    DatabaseDep,
    SnapshotDep,
    strict_query,
)
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin import reservations as admin_resv
from hpcportal.services.admin.flow import apply_checked, plan_of, runner
from hpcportal.services.admin.plan import Applied, ApplyBody, PlanView
from hpcportal.services.admin.reservations import Calendar, ReservationRequest

router = APIRouter(prefix="/admin/reservations", tags=["admin"])


class ReservationApply(ApplyBody):
    """A reservation change to apply: the change, why, and the argv the person saw
    (required: a reservation runs only as the plan that was shown)."""

    change: ReservationRequest
    expect: list[list[str]]


@router.get("", response_model=Calendar, dependencies=[strict_query("start", "days")])
async def reservations(
    _: AdminUser,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    start: Moment | None = None,
    days: int = 7,
) -> Calendar:
    """Every reservation slurmctld has now, with the jobs each one hits, and the
    calendar: one row per node, one cell per day from ``start`` (default today, UTC)."""
    snap = await snapshot.current()
    found = await run_in_threadpool(admin_resv.read_all, adapter)
    return admin_resv.calendar(snap, found, start=start, days=max(1, min(days, 31)))


@router.post("/plan", response_model=PlanView)
async def plan_reservation_change(
    change: ReservationRequest, _: AdminUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> PlanView:
    """The scontrol command a create, update or delete would run, the running and
    pending jobs it conflicts with (and why), and the command that undoes it."""
    return PlanView.of(await plan_of(admin_resv.plan_request, adapter, snapshot, change))


@router.post("/apply", response_model=Applied)
async def apply_reservation_change(
    body: ReservationApply,
    who: AdminUser,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Apply a reservation change as you, with a reason (audited; revertible once
    through ``POST /admin/changes/{id}/revert``)."""
    plan = await plan_of(admin_resv.plan_request, adapter, snapshot, body.change)
    run = runner(
        admin_plan.apply, adapter.admin, database, who=who, why=body.reason, address=address
    )
    return await apply_checked(plan, body.expect, run)
