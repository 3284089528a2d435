"""The admin area's QoS page (``/admin/qos``): values and jobs, plan, apply, revert.

Plain forms, like the nodes page: choosing a QoS fills the form with its current
values; "Show the plan" (a GET) shows the exact ``sacctmgr`` command, the values
before and after, the jobs under the QoS and those a limit change would release or
hold back, and the command that would revert it. The plan's Apply form posts the
same values with the argv shown (``expect``), the reason for the audit log and the
CSRF cookie's value; the same services as the API run it as the administrator, so
slurmdbd's refusal is shown with its status (403 with Slurm's reason). An empty
limit field is "no limit".
"""

from __future__ import annotations

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
from hpcportal.errors import InvalidInput, PortalError
from hpcportal.limits import DbId
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin import qos as admin_qos
from hpcportal.services.admin.flow import runner
from hpcportal.services.admin.plan import Plan
from hpcportal.services.admin.qos import QosRequest
from hpcportal.slurm.admin_qos import QosSpec
from hpcportal.web.admin_forms import (
    apply_form,
    form_text,
    plan_context,
    require_admin,
    revert_plan,
    said,
    shown,
)
from hpcportal.web.common import Page, PageDep, basic_page, current_snapshot
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form()]
ACTIONS = (("create", N_("Create")), ("modify", N_("Modify")), ("delete", N_("Delete")))
PREEMPT_MODES = ("cluster", "off", "cancel", "requeue", "suspend")
#: The form's limit fields, their labels, and whether each is a whole number.
LIMITS = (
    ("priority", N_("Priority"), True),
    ("preempt", N_("May preempt (QoS names, comma-separated)"), False),
    ("flags", N_("Flags (DenyOnLimit, NoReserve, ...)"), False),
    ("grp_tres", N_("Group TRES limit (cpu=16,mem=64G)"), False),
    ("grp_jobs", N_("Group running jobs"), True),
    ("grp_submit_jobs", N_("Group submitted jobs"), True),
    ("max_tres_per_job", N_("TRES per job"), False),
    ("max_tres_per_user", N_("TRES per user"), False),
    ("max_wall_minutes", N_("Wall time per job (minutes)"), True),
    ("max_jobs_per_user", N_("Running jobs per user"), True),
    ("max_submit_jobs_per_user", N_("Submitted jobs per user"), True),
    ("max_jobs_per_account", N_("Running jobs per account"), True),
)
FIELDS = ("action", "name", "preempt_mode", *(name for name, _, _ in LIMITS))


def form_of(spec: QosSpec) -> dict[str, str]:
    """A QoS's values as the form shows them (empty: no limit)."""
    values = spec.model_dump()
    form = {"action": "modify", "name": spec.name, "preempt_mode": spec.preempt_mode}
    return form | {name: form_text(values[name]) for name, _, _ in LIMITS}


def chips(spec: QosSpec) -> list[tuple[str, str]]:
    """The limits a QoS sets, as (label, value) for the list."""
    form = form_of(spec)
    return [(label, form[name]) for name, label, _ in LIMITS[1:] if form[name]]


def request_of(form: dict[str, str]) -> QosRequest:
    """The form as a ``QosRequest``: every limit field is sent (empty: none), so a
    modify sets the QoS to exactly what the form shows; the plan keeps only changes."""
    if form["action"] == "delete":
        return QosRequest.model_validate({"action": "delete", "name": form["name"]})
    values: dict[str, Any] = {"preempt_mode": form["preempt_mode"] or "cluster"}
    for name, _, whole in LIMITS:
        text = form[name].strip()
        if whole and text and not text.isdigit():
            raise InvalidInput(f"{name}: give a whole number, or leave it empty for no limit.")
        values[name] = (int(text) if text else None) if whole else text
    return QosRequest.model_validate(
        {"action": form["action"], "name": form["name"], "values": values}
    )


async def _render(
    page: Page,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    snap = await current_snapshot(page, snapshot)
    rows = await run_in_threadpool(admin_qos.qos_rows, adapter, snap)
    history = await run_in_threadpool(lambda: admin_plan.changes(database, kind_prefix="qos."))
    return page.render(
        "admin_qos.html",
        status=status,
        page_key="admin",
        rows=rows,
        actions=ACTIONS,
        limits=LIMITS,
        preempt_modes=PREEMPT_MODES,
        chips=chips,
        changes=history[:20],
        shown=shown,
        **{"error": None, "applied": None, "plan": None, "form": None, "expect": "", **context},
    )


@router.get("/admin/qos", response_class=HTMLResponse)
async def admin_qos_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    applied: int | None = None,
    edit: str = "",
) -> HTMLResponse:
    require_admin(page)
    query = page.request.query_params
    render = partial(_render, page, snapshot, adapter, database)
    if edit:  # the form filled with a QoS's current values
        try:
            rows = await run_in_threadpool(admin_qos.qos_rows, adapter, await snapshot.current())
        except PortalError as exc:
            return await render(status=exc.status, error=exc.message)
        found = next((r.qos for r in rows if r.qos.name == edit.lower()), None)
        form = form_of(found) if found else None
        return await render(form=form, applied=applied)
    if not query.get("action"):
        return await render(applied=applied)
    form = {name: query.get(name, "") for name in FIELDS}
    try:
        change = request_of(form)
        snap = await snapshot.current()
        plan = await run_in_threadpool(admin_qos.plan_request, adapter, snap, change)
    except PortalError as exc:
        return await render(status=exc.status, error=exc.message, form=form)
    except ValueError as exc:
        return await render(status=422, error=said(page, exc), form=form)
    return await render(form=form, **plan_context(plan))


@router.post("/admin/qos/apply", response_model=None)
async def admin_qos_apply(
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Response:
    """Apply the plan the form shows (``FormUser`` checked the form's CSRF value)."""
    page = basic_page(request, settings, who)
    require_admin(page)
    posted = await request.form()
    form = {name: str(posted.get(name, "")) for name in FIELDS}
    why = str(posted.get("why", ""))

    async def plan() -> Plan:
        change = request_of(form)
        snap = await snapshot.current()
        return await run_in_threadpool(admin_qos.plan_request, adapter, snap, change)

    return await apply_form(
        page,
        partial(_render, page, snapshot, adapter, database),
        plan,
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        str(posted.get("expect", "")),
        "/admin/qos",
        context={"form": form},
        after=adapter.cache.clear,
    )


@router.post("/admin/qos/changes/{change_id}/revert", response_model=None)
async def admin_qos_revert(
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
    """Undo a QoS change from the page's list (``/admin/changes`` reverts any kind)."""
    page = basic_page(request, settings, who)
    require_admin(page)
    return await apply_form(
        page,
        partial(_render, page, snapshot, adapter, database),
        revert_plan(database, change_id, ("qos.",), "a QoS change"),
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        expect,
        "/admin/qos",
        after=adapter.cache.clear,
    )
