"""The admin area's accounts page (``/admin/accounts``): the account tree with its
associations, plan, apply, revert.

Open to portal admins (every account) and to Slurm coordinators (the accounts they
coordinate, read from ``sacctmgr show user withcoord``); anyone else gets 403. Plain
forms, like the QoS page: an account's or a user's name fills a form with its current
values; "Show the plan" (a GET) shows the exact ``sacctmgr`` commands, the values
before and after, the jobs touched and the revert. The plan's Apply form posts the same
values with the argv shown (``expect``), the reason for the audit log and the CSRF
cookie's value; the same services as the API run it as the person, so slurmdbd's
refusal is shown with its status (403 with Slurm's reason). An empty limit field is
"no limit"; an empty QoS field is the parent's list.
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
from hpcportal.services.admin import account_access
from hpcportal.services.admin import accounts as admin_accounts
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin.account_access import AccountsView
from hpcportal.services.admin.accounts import AccountRequest, UserRequest
from hpcportal.services.admin.flow import runner
from hpcportal.services.admin.plan import Plan
from hpcportal.slurm.admin_accounts import AssocLimits
from hpcportal.web.admin_forms import (
    apply_form,
    form_text,
    plan_context,
    require_admin,
    revert_plan,
    said,
    shown,
)
from hpcportal.web.common import Page, PageDep, PageError, basic_page, current_snapshot
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)
Field = Annotated[str, Form()]
ACCOUNT_ACTIONS = (("create", N_("Create")), ("modify", N_("Modify")), ("delete", N_("Delete")))
USER_ACTIONS = (("add", N_("Add")), ("modify", N_("Modify")), ("remove", N_("Remove")))
#: The form's limit fields, their labels, and whether each is a whole number.
LIMITS = (
    ("fairshare", N_("Fairshare (a number, or parent)"), False),
    ("grp_tres", N_("Group TRES limit (cpu=16,mem=64G)"), False),
    ("grp_jobs", N_("Group running jobs"), True),
    ("grp_submit_jobs", N_("Group submitted jobs"), True),
    ("max_jobs", N_("Running jobs"), True),
    ("max_submit_jobs", N_("Submitted jobs"), True),
    ("max_wall_minutes", N_("Wall time per job (minutes)"), True),
    ("max_tres_per_job", N_("TRES per job"), False),
    ("qos", N_("QoS allowed (comma-separated; empty: the parent's)"), False),
    ("default_qos", N_("Default QoS"), False),
)
ACCOUNT_FIELDS = ("action", "name", "parent", "description", "organization")
USER_FIELDS = ("action", "user", "account")
LIMIT_NAMES = tuple(name for name, _, _ in LIMITS)
NEEDS_ROLE = N_("This needs the administrator role or a Slurm coordinator of an account.")


def form_of(limits: AssocLimits) -> dict[str, str]:
    """An association's values as the form shows them (empty: no limit)."""
    return {name: form_text(value) for name, value in limits.model_dump().items()}


def chips(limits: AssocLimits) -> list[tuple[str, str]]:
    """The limits an association sets, as (label, value) for the list."""
    form = form_of(limits)
    return [(label, form[name]) for name, label, _ in LIMITS[1:] if form[name]]


def _values(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, _, whole in LIMITS:
        text = form.get(name, "").strip()
        if whole and text and not text.isdigit():
            raise InvalidInput(f"{name}: give a whole number, or leave it empty for no limit.")
        if name == "fairshare":
            values[name] = (int(text) if text.isdigit() else text) if text else None
        else:
            values[name] = (int(text) if text else None) if whole else (text or None)
    return values


def account_request(form: dict[str, str]) -> AccountRequest:
    """The account form as a request: every limit field is sent (empty: none), so a
    modify sets the account to exactly what the form shows; the plan keeps changes."""
    base: dict[str, Any] = {"action": form["action"], "name": form["name"]}
    if form["action"] == "delete":
        return AccountRequest.model_validate(base)
    for key in ("parent", "description", "organization"):
        if form.get(key, "").strip():
            base[key] = form[key].strip()
    return AccountRequest.model_validate({**base, "values": _values(form)})


def user_request(form: dict[str, str]) -> UserRequest:
    base: dict[str, Any] = {k: form[k] for k in USER_FIELDS}
    if form["action"] == "remove":
        return UserRequest.model_validate(base)
    return UserRequest.model_validate({**base, "values": _values(form)})


class _Renderer:
    """Renders the page with the request's parts bound (each route renders on error)."""

    def __init__(
        self, page: Page, snapshot: SnapshotDep, adapter: AdapterDep, database: DatabaseDep
    ) -> None:
        self.page, self.snapshot, self.adapter, self.database = page, snapshot, adapter, database

    async def view(self) -> AccountsView:
        if self.page.user is None:
            raise PageError(401, self.page.gettext(N_("Log in first.")))
        snap = await current_snapshot(self.page, self.snapshot)
        try:
            return await run_in_threadpool(account_access.view, self.adapter, snap, self.page.user)
        except PortalError as exc:
            if exc.status == 403:
                raise PageError(403, self.page.gettext(NEEDS_ROLE)) from exc
            raise

    async def __call__(self, *, status: int = 200, **context: Any) -> HTMLResponse:
        view = await self.view()
        is_admin = bool(self.page.user and self.page.user.is_admin)
        history = []
        if is_admin:
            history = await run_in_threadpool(
                lambda: [
                    c
                    for c in admin_plan.changes(self.database, limit=100)
                    if c.kind.startswith(("account.", "user."))
                ][:20]
            )
        return self.page.render(
            "admin_accounts.html",
            status=status,
            page_key="admin",
            view=view,
            account_actions=ACCOUNT_ACTIONS,
            user_actions=USER_ACTIONS,
            limits=LIMITS,
            chips=chips,
            changes=history,
            shown=shown,
            **{
                "error": None,
                "applied": None,
                "plan": None,
                "form": None,
                "user_form": None,
                "expect": "",
                **context,
            },
        )


async def _plan(
    kind: str, values: dict[str, str], snapshot: SnapshotDep, adapter: AdapterDep
) -> Plan:
    """The plan of the account form (``kind`` "account") or the user form ("user")."""
    snap = await snapshot.current()
    if kind == "account":
        change = account_request(values)
        return await run_in_threadpool(admin_accounts.plan_account, adapter, snap, change)
    if kind == "user":
        return await run_in_threadpool(
            admin_accounts.plan_user, adapter, snap, user_request(values)
        )
    raise InvalidInput("Unknown form.")


@router.get("/admin/accounts", response_class=HTMLResponse)
async def admin_accounts_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    applied: int | None = None,
    edit: str = "",
    edit_user: str = "",
    form: str = "",
) -> HTMLResponse:
    render = _Renderer(page, snapshot, adapter, database)
    query = page.request.query_params
    view = await render.view()
    if edit or edit_user:  # a form filled with an association's current values
        account = edit.lower()
        node = next((n for n in view.accounts if n.info.name == account), None)
        if node is None:
            return await render(applied=applied)
        if edit_user:
            assoc = next((a for a in node.users if a.user == edit_user), None)
            if assoc is None:
                return await render(applied=applied)
            user_form = {"action": "modify", "user": edit_user, "account": account}
            return await render(user_form={**user_form, **form_of(assoc.limits)})
        info = node.info
        account_form = {
            "action": "modify",
            "name": account,
            "parent": node.association.parent or "",
            "description": info.description,
            "organization": info.organization,
        }
        return await render(form={**account_form, **form_of(node.association.limits)})
    if form not in ("account", "user") or not query.get("action"):
        return await render(applied=applied)
    fields = ACCOUNT_FIELDS if form == "account" else USER_FIELDS
    values = {name: query.get(name, "") for name in (*fields, *LIMIT_NAMES)}
    key = "form" if form == "account" else "user_form"
    try:
        plan = await _plan(form, values, snapshot, adapter)
    except PortalError as exc:
        return await render(status=exc.status, error=exc.message, **{key: values})
    except ValueError as exc:
        return await render(status=422, error=said(page, exc), **{key: values})
    context: dict[str, Any] = {key: values, "plan_form": form, **plan_context(plan)}
    return await render(**context)


@router.post("/admin/accounts/apply", response_model=None)
async def admin_accounts_apply(
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
    render = _Renderer(page, snapshot, adapter, database)
    await render.view()  # admins and coordinators only
    posted = await request.form()
    kind = str(posted.get("plan_form", ""))
    fields = ACCOUNT_FIELDS if kind == "account" else USER_FIELDS
    values = {name: str(posted.get(name, "")) for name in (*fields, *LIMIT_NAMES)}
    key = "form" if kind == "account" else "user_form"
    why = str(posted.get("why", ""))
    run = runner(
        account_access.apply, adapter.admin, adapter, database, who=who, why=why, address=address
    )
    return await apply_form(
        page,
        render,
        partial(_plan, kind, values, snapshot, adapter),
        run,
        str(posted.get("expect", "")),
        "/admin/accounts",
        context={key: values},
        after=adapter.cache.clear,
    )


@router.post("/admin/accounts/changes/{change_id}/revert", response_model=None)
async def admin_accounts_revert(
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
    """Undo an account or association change from the page's list (portal admins)."""
    page = basic_page(request, settings, who)
    require_admin(page)
    return await apply_form(
        page,
        _Renderer(page, snapshot, adapter, database),
        revert_plan(database, change_id, ("account.", "user."), "an account change"),
        runner(admin_plan.apply, adapter.admin, database, who=who, why=why, address=address),
        expect,
        "/admin/accounts",
        after=adapter.cache.clear,
    )
