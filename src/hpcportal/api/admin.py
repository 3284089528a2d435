"""The admin console's API: nodes, and the applied changes with their revert.

Thin: the portal's admin role (``AdminUser``) decides who sees these routes; every
change runs as the administrator's own Unix user, so Slurm decides whether it happens
(403 with Slurm's reason otherwise). A change is planned (``.../plan``: the exact
commands and what they affect), then applied with a reason (``.../apply``, with the
plan's argv as ``expect``, required for nodes: 409 instead of a different change if
the cluster moved meanwhile), and can be reverted from the state recorded before it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from hpcportal.api.params import DbId
from hpcportal.dependencies import (
    AdapterDep,
    AdminUser,
    ClientAddress,
    DatabaseDep,
    SnapshotDep,
    strict_query,
)
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin.flow import apply_checked, runner
from hpcportal.services.admin.nodes import (
    REASON_TEMPLATES,
    NodeChange,
    NodeRow,
    node_rows,
    plan_nodes,
)
from hpcportal.services.admin.plan import Applied, ApplyBody, ChangeView, Plan, PlanView

router = APIRouter(prefix="/admin", tags=["admin"])


class NodesView(BaseModel):
    nodes: list[NodeRow]
    reason_templates: list[str]


class NodeApply(ApplyBody):
    """A node change to apply: the change, why, and the argv the person saw.

    ``expect`` is required, as for QoS: a drain or down runs only as the plan that was
    shown (409 if the plan is now different), never from a body alone."""

    change: NodeChange
    expect: list[list[str]]


@router.get("/nodes", response_model=NodesView)
async def nodes(_: AdminUser, snapshot: SnapshotDep) -> NodesView:
    """Every node's state and reason, who set the reason and when, and its jobs."""
    snap = await snapshot.current()
    return NodesView(nodes=node_rows(snap), reason_templates=list(REASON_TEMPLATES))


@router.post("/nodes/plan", response_model=PlanView)
async def plan_node_change(
    change: NodeChange, _: AdminUser, snapshot: SnapshotDep, adapter: AdapterDep
) -> PlanView:
    """What a drain, down, resume or reboot would run and which running jobs it hits."""
    return PlanView.of(await _plan(change, snapshot, adapter))


async def _plan(change: NodeChange, snapshot: SnapshotDep, adapter: AdapterDep) -> Plan:
    """The plan on the nodes as Slurm lists them now (the state a revert restores)."""
    snap = await snapshot.current()
    return plan_nodes(change, snap, await run_in_threadpool(adapter.nodes))


@router.post("/nodes/apply", response_model=Applied)
async def apply_node_change(
    body: NodeApply,
    who: AdminUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Apply a node change as you, with a reason (recorded in the audit log)."""
    plan = await _plan(body.change, snapshot, adapter)
    run = runner(
        admin_plan.apply, adapter.admin, database, who=who, why=body.reason, address=address
    )
    applied = await apply_checked(plan, body.expect, run)
    await snapshot.refresh()  # the page shows the node's new state at once
    return applied


@router.get(
    "/changes", response_model=list[ChangeView], dependencies=[strict_query("kind", "limit")]
)
async def changes(
    _: AdminUser, database: DatabaseDep, kind: str = "", limit: int = 50
) -> list[ChangeView]:
    """Applied changes, newest first; ``kind`` matches a prefix (``node.``, ``qos.``)."""
    return await run_in_threadpool(
        lambda: admin_plan.changes(database, kind_prefix=kind, limit=max(1, min(limit, 500)))
    )


@router.get("/changes/{change_id}/revert", response_model=PlanView)
async def plan_revert(change_id: DbId, _: AdminUser, database: DatabaseDep) -> PlanView:
    """The plan that undoes an applied change, from the state recorded before it."""
    return PlanView.of(await run_in_threadpool(admin_plan.revert_plan, database, change_id))


@router.post("/changes/{change_id}/revert", response_model=Applied)
async def revert(
    change_id: DbId,
    body: ApplyBody,
    who: AdminUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Undo an applied change as you, with a reason; a change is reverted once."""
    plan = await run_in_threadpool(admin_plan.revert_plan, database, change_id)
    run = runner(
        admin_plan.apply, adapter.admin, database, who=who, why=body.reason, address=address
    )
    applied = await apply_checked(plan, body.expect, run)
    await snapshot.refresh()
    return applied
