"""What every admin page's forms share: the role check, the plan shown with its
``expect``, and applying or reverting a plan from a posted form.

Each page plans its own change; ``apply_form`` then checks the plan against the argv
the page showed (``expect``: 409 when it changed), runs it as the person the form's
CSRF value identified (``FormUser``), and answers with a 303 back to the page
(``?applied=ID``) or the page again with Slurm's refusal and its status (422 for a
form that does not parse). ``revert_form`` does the same for a change from the page's
list, refusing (400) a change of another page's kind.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hpcportal.db.session import Database
from hpcportal.errors import InvalidInput, PortalError
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin.flow import Run, apply_checked
from hpcportal.services.admin.plan import Plan, PlanView
from hpcportal.slurm.admin_actions import AdminCommand, AdminProgram
from hpcportal.web.common import Page, PageError
from hpcportal.web.i18n import N_

#: Renders the page again with an error (``status``, ``error`` and the form's context).
Render = Callable[..., Awaitable[HTMLResponse]]


def require_admin(page: Page) -> None:
    """403 on the page unless its user is in the portal's admin group."""
    if page.user is None or not page.user.is_admin:
        raise PageError(403, page.gettext(N_("This needs the administrator role.")))


def shown(argv: list[str]) -> str:
    """An argv stored with a change as the page shows it (``$ sacctmgr ...``)."""
    return AdminCommand(cast(AdminProgram, argv[0]), tuple(argv[1:])).shown()


def said(page: Page, exc: ValueError) -> str:
    """A form's validation error in words (pydantic's messages, else "Check the form.")."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")) for e in errors()) or page.gettext(
            N_("Check the form.")
        )
    return page.gettext(N_("Check the form."))


def form_text(value: Any) -> str:
    """A limit as a form field shows it: TRES as ``cpu=4,mem=8192M``, lists comma-joined,
    none as empty."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}M" if k == "mem" else f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    return "" if value is None else str(value)


def plan_context(plan: Plan) -> dict[str, Any]:
    """The template's ``plan`` and the ``expect`` its Apply form posts back."""
    view = PlanView.of(plan)
    return {"plan": view, "expect": json.dumps([c.argv for c in view.commands])}


async def apply_form(
    page: Page,
    render: Render,
    plan: Callable[[], Awaitable[Plan]],
    run: Run,
    expect: str,
    back: str,
    *,
    context: dict[str, Any] | None = None,
    empty_expect: list[list[str]] | None = None,
    after: Callable[[], Awaitable[object] | None] | None = None,
    words: Callable[[Page, ValueError], str] = said,
) -> Response:
    """Plan, check against ``expect`` (empty: ``empty_expect``), apply, then ``after``
    and a 303 to ``back?applied=ID``; on a refusal the page again with ``context``."""
    shown_context = context or {}
    try:
        planned = await plan()
        done = await apply_checked(planned, json.loads(expect) if expect else empty_expect, run)
    except PortalError as exc:
        return await render(status=exc.status, error=exc.message, **shown_context)
    except ValueError as exc:
        return await render(status=422, error=words(page, exc), **shown_context)
    if after is not None:
        pending = after()
        if pending is not None:
            await pending
    return RedirectResponse(f"{back}?applied={done.change_id}", status_code=303)


def revert_plan(
    database: Database, change_id: int, kinds: tuple[str, ...], what: str
) -> Callable[[], Awaitable[Plan]]:
    """The plan that undoes ``change_id``; 400 unless its kind starts with ``kinds``
    (``what`` names them: "a QoS change"). No ``kinds``: any change."""

    async def planned() -> Plan:
        plan = await run_in_threadpool(admin_plan.revert_plan, database, change_id)
        if kinds and not plan.kind.startswith(kinds):
            raise InvalidInput(f"Change {change_id} is not {what}.")
        return plan

    return planned
