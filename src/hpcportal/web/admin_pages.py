"""The admin area's nodes page (``/admin/nodes``): states and reasons, plan, apply, revert.

Plain forms, no script: choosing a change shows its plan (a GET: the exact commands,
the running jobs it hits, how it would be reverted); the plan's Apply form posts the
change with the argv shown (``expect``), the reason for the audit log and the CSRF
cookie's value, and the same services as the API run it as the administrator. Slurm's
refusal is shown on the page with its status (403 with Slurm's reason). Only members
of the portal's admin group see the page; Slurm still decides what happens.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from hpcportal.dependencies import (
    AdapterDep,
    ClientAddress,
    DatabaseDep,
    FormUser,
    SettingsDep,
    SnapshotDep,
)
from hpcportal.errors import PortalError
from hpcportal.limits import DbId
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin.flow import runner
from hpcportal.services.admin.nodes import REASON_TEMPLATES, NodeChange, node_rows, plan_nodes
from hpcportal.services.admin.plan import Plan, PlanView
from hpcportal.web.admin_forms import apply_form, require_admin, revert_plan, shown
from hpcportal.web.common import Page, PageDep, basic_page, current_snapshot
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)
ACTIONS = (
    ("drain", N_("Drain (running jobs finish)")),
    ("down", N_("Down (now)")),
    ("resume", N_("Resume")),
    ("reboot", N_("Reboot when idle")),
)
Field = Annotated[str, Form()]


def _check_the_form(page: Page, _: ValueError) -> str:
    return page.gettext(N_("Check the form."))


async def _plan(change: NodeChange, snapshot: SnapshotDep, adapter: AdapterDep) -> Plan:
    """The plan on the nodes as Slurm lists them now (as the API plans it)."""
    snap = await snapshot.current()
    return plan_nodes(change, snap, await run_in_threadpool(adapter.nodes))


def _change(action: str, nodes: str, reason: str, next_state: str) -> NodeChange:
    return NodeChange.model_validate(
        {"action": action, "nodes": nodes, "reason": reason or None, "next_state": next_state}
    )


async def _render(
    page: Page,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    snap = await current_snapshot(page, snapshot)
    history = await run_in_threadpool(lambda: admin_plan.changes(database, kind_prefix="node."))
    return page.render(
        "admin_nodes.html",
        status=status,
        page_key="admin",
        nodes=sorted(node_rows(snap), key=lambda n: n.name),
        templates=REASON_TEMPLATES,
        actions=ACTIONS,
        changes=history[:20],
        shown=shown,
        **{"error": None, "applied": None, "plan": None, "form": None, "expect": "", **context},
    )


@router.get("/admin/nodes", response_class=HTMLResponse)
async def admin_nodes_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    action: str = "",
    nodes: str = "",
    reason: str = "",
    next_state: str = "resume",
    applied: int | None = None,
) -> HTMLResponse:
    require_admin(page)
    if not (action and nodes):
        return await _render(page, snapshot, database, applied=applied)
    form = {"action": action, "nodes": nodes, "reason": reason, "next_state": next_state}
    try:
        change = _change(action, nodes, reason, next_state)
        plan = PlanView.of(await _plan(change, snapshot, adapter))
    except (PortalError, ValueError) as exc:
        message = (
            exc.message if isinstance(exc, PortalError) else page.gettext(N_("Check the form."))
        )
        status = exc.status if isinstance(exc, PortalError) else 422
        return await _render(page, snapshot, database, status=status, error=message, form=form)
    expect = json.dumps([c.argv for c in plan.commands])
    return await _render(page, snapshot, database, plan=plan, form=form, expect=expect)


@router.post("/admin/nodes/apply", response_model=None)
async def admin_nodes_apply(
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    address: ClientAddress,
    action: Field = "",
    nodes: Field = "",
    reason: Field = "",
    next_state: Field = "resume",
    why: Field = "",
    expect: Field = "",
) -> Response:
    page = basic_page(request, settings, who)
    require_admin(page)
    form = {"action": action, "nodes": nodes, "reason": reason, "next_state": next_state}

    async def plan() -> Plan:
        return await _plan(_change(action, nodes, reason, next_state), snapshot, adapter)

    return await apply_form(
        page,
        partial(_render, page, snapshot, database),
        plan,
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        expect,
        "/admin/nodes",
        context={"form": form},
        after=snapshot.refresh,
        words=_check_the_form,
    )


@router.post("/admin/changes/{change_id}/revert", response_model=None)
async def admin_change_revert(
    change_id: DbId,
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    address: ClientAddress,
    why: Field = "",
    expect: Field = "",
) -> Response:
    page = basic_page(request, settings, who)
    require_admin(page)
    return await apply_form(
        page,
        partial(_render, page, snapshot, database),
        revert_plan(database, change_id, (), "a change"),
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        expect,
        "/admin/nodes",
        after=snapshot.refresh,
        words=_check_the_form,
    )
