"""The admin area's reservations page (``/admin/reservations``): the calendar, plan,
apply, revert.

A week grid rendered here (one row per node, one cell per day, UTC; maintenance
reservations marked), the list of reservations with the jobs each one conflicts
with, and plain forms like the QoS page: choosing a reservation fills the form with
its values; "Show the plan" (a GET) shows the exact ``scontrol`` command, the running
and pending jobs it conflicts with and why, and the command that would revert it. The
plan's Apply form posts the same values with the argv shown (``expect``), the reason
for the audit log and the CSRF cookie's value; the same services as the API run it as
the administrator, so slurmctld's refusal is shown with its status (403 with Slurm's
reason).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
from hpcportal.services.admin import reservations as admin_resv
from hpcportal.services.admin.flow import runner
from hpcportal.services.admin.plan import Plan
from hpcportal.services.admin.reservations import ReservationRequest
from hpcportal.slurm.admin_reservations import LAST_YEAR, RESERVATION_FLAGS, Reservation
from hpcportal.web.admin_forms import (
    apply_form,
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
ACTIONS = (("create", N_("Create")), ("update", N_("Update")), ("delete", N_("Delete")))
FLAGS = tuple(sorted(RESERVATION_FLAGS))
#: The form's text fields and their labels.
TEXT_FIELDS = (
    ("start", N_("Start (UTC; empty on create: now)")),
    ("end", N_("End (UTC)")),
    ("duration_minutes", N_("Or duration (minutes)")),
    ("nodes", N_("Nodes (node[001-002])")),
    ("node_count", N_("Or node count")),
    ("users", N_("Users (comma-separated)")),
    ("accounts", N_("Accounts (comma-separated)")),
    ("partition", N_("Partition (with a node count)")),
)
FIELDS = ("action", "name", *(name for name, _ in TEXT_FIELDS))
_MINUTE = "%Y-%m-%dT%H:%M"


def form_of(resv: Reservation) -> dict[str, Any]:
    """A reservation's values as the update form shows them."""
    return {
        "action": "update",
        "name": resv.name,
        "start": resv.start_time.strftime(_MINUTE),
        "end": resv.end_time.strftime(_MINUTE),
        "duration_minutes": "",
        "nodes": resv.nodes or "",
        "node_count": "",
        "users": ",".join(resv.users),
        "accounts": ",".join(resv.accounts),
        "partition": "",
        "flags": list(resv.managed_flags),
    }


def request_of(form: dict[str, Any]) -> ReservationRequest:
    """The form as a ``ReservationRequest``. A create sends what is filled in; an
    update sends what is filled in, with users, accounts and flags as the form shows
    them (an empty list clears it), so it sets exactly what the form shows."""
    action = form["action"]
    if action == "delete":
        return ReservationRequest.model_validate({"action": "delete", "name": form["name"]})
    values: dict[str, Any] = {}
    for name, _ in TEXT_FIELDS:
        text = str(form[name]).strip()
        if name in ("duration_minutes", "node_count") and text and not text.isdigit():
            raise InvalidInput(f"{name}: give a whole number.")
        if text:
            values[name] = int(text) if name in ("duration_minutes", "node_count") else text
    if action == "update":
        values["users"] = values.get("users", "")
        values["accounts"] = values.get("accounts", "")
        if "end" in values and "duration_minutes" in values:
            del values["end"]  # a duration given on an edit form wins over the end shown
    values["flags"] = list(form["flags"])
    if action == "create" and not values["flags"]:
        del values["flags"]
    return ReservationRequest.model_validate(
        {"action": action, "name": form["name"], "values": values}
    )


def _week_start(text: str) -> datetime | None:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) if text else None
    except ValueError:
        raise InvalidInput("start: give a day as YYYY-MM-DD.") from None
    if day is not None and not 1970 <= day.year <= LAST_YEAR:
        raise InvalidInput(f"start: give a day between 1970 and {LAST_YEAR}.")
    return day


async def _render(
    page: Page,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    *,
    status: int = 200,
    week: datetime | None = None,
    **context: Any,
) -> HTMLResponse:
    snap = await current_snapshot(page, snapshot)
    found = await run_in_threadpool(admin_resv.read_all, adapter)
    cal = admin_resv.calendar(snap, found, start=week)
    history = await run_in_threadpool(
        lambda: admin_plan.changes(database, kind_prefix="reservation.")
    )
    return page.render(
        "admin_reservations.html",
        status=status,
        page_key="admin",
        calendar=cal,
        previous_week=(cal.start - timedelta(days=7)).strftime("%Y-%m-%d"),
        next_week=(cal.start + timedelta(days=7)).strftime("%Y-%m-%d"),
        actions=ACTIONS,
        text_fields=TEXT_FIELDS,
        flags=FLAGS,
        changes=history[:20],
        shown=shown,
        **{"error": None, "applied": None, "plan": None, "form": None, "expect": "", **context},
    )


def _posted(source: Any) -> dict[str, Any]:
    form: dict[str, Any] = {name: str(source.get(name, "")) for name in FIELDS}
    form["flags"] = [str(f) for f in source.getlist("flags")]
    return form


@router.get("/admin/reservations", response_class=HTMLResponse)
async def admin_reservations_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    applied: int | None = None,
    edit: str = "",
    week: str = "",
) -> HTMLResponse:
    require_admin(page)
    render = partial(_render, page, snapshot, adapter, database)
    try:
        start = _week_start(week)
    except PortalError as exc:
        return await render(status=exc.status, error=exc.message)
    query = page.request.query_params
    if edit:  # the form filled with a reservation's current values
        try:
            found = await run_in_threadpool(admin_resv.read_all, adapter)
        except PortalError as exc:
            return await render(status=exc.status, error=exc.message, week=start)
        resv = next((r for r in found if r.name == edit), None)
        return await render(form=form_of(resv) if resv else None, applied=applied, week=start)
    if not query.get("action"):
        return await render(applied=applied, week=start)
    form = _posted(query)
    try:
        change = request_of(form)
        snap = await snapshot.current()
        plan = await run_in_threadpool(admin_resv.plan_request, adapter, snap, change)
    except PortalError as exc:
        return await render(status=exc.status, error=exc.message, form=form, week=start)
    except ValueError as exc:
        return await render(status=422, error=said(page, exc), form=form, week=start)
    return await render(form=form, week=start, **plan_context(plan))


@router.post("/admin/reservations/apply", response_model=None)
async def admin_reservations_apply(
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
    form = _posted(posted)
    why = str(posted.get("why", ""))

    async def plan() -> Plan:
        change = request_of(form)
        snap = await snapshot.current()
        return await run_in_threadpool(admin_resv.plan_request, adapter, snap, change)

    return await apply_form(
        page,
        partial(_render, page, snapshot, adapter, database),
        plan,
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        str(posted.get("expect", "")),
        "/admin/reservations",
        context={"form": form},
        empty_expect=[],
    )


@router.post("/admin/reservations/changes/{change_id}/revert", response_model=None)
async def admin_reservations_revert(
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
    """Undo a reservation change from the page's list (``/admin/changes`` reverts any)."""
    page = basic_page(request, settings, who)
    require_admin(page)
    return await apply_form(
        page,
        partial(_render, page, snapshot, adapter, database),
        revert_plan(database, change_id, ("reservation.",), "a reservation change"),
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        expect,
        "/admin/reservations",
        empty_expect=[],
    )
