"""The admin area's delivery page (``/admin/delivery``): the outbox by state with its dead
letters (resend), and the site-wide channels (add, enable or disable, delete). Plain
HTML forms (``FormUser`` checks each form's CSRF value) calling the same services as
``/api/v1/admin/delivery``; each change is audited in its own transaction."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from hpcportal.db.session import Database
from hpcportal.dependencies import ClientAddress, DatabaseDep, FormUser, SettingsDep
from hpcportal.errors import PortalError
from hpcportal.services import audit
from hpcportal.services.delivery import site_channels
from hpcportal.services.delivery.site_channels import (
    SiteChannelIn,
    SiteChannelPatch,
)
from hpcportal.services.delivery.url_guard import UrlGuard
from hpcportal.web.admin_forms import require_admin, said
from hpcportal.web.common import Page, PageDep, basic_page
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)
PATH = "/admin/delivery"
STATES = ("pending", "sending", "sent", "dead")
Field = Annotated[str, Form()]


def _read(database: Database, state: str | None, before: int | None) -> dict[str, Any]:
    with database.session() as session:
        return {
            "outbox": site_channels.outbox_page(session, state=state, limit=50, before=before),
            "channels": site_channels.site_channels(session),
        }


async def _render(
    page: Page,
    database: Database,
    *,
    status: int = 200,
    error: str | None = None,
    secret: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    query = page.request.query_params
    state = query.get("state")
    state = state if state in STATES else None
    before_text = query.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    data = await run_in_threadpool(_read, database, state, before)
    return page.render(
        "admin_delivery.html",
        page_key="admin",
        status=status,
        state=state,
        states=STATES,
        error=error,
        secret=secret,
        form={"kind": "webhook", "name": "", "target": "", "language": "en", **(form or {})},
        done=query.get("done"),
        **data,
    )


@router.get(PATH, response_class=HTMLResponse)
async def admin_delivery_page(page: PageDep, database: DatabaseDep) -> HTMLResponse:
    require_admin(page)
    return await _render(page, database)


def _admin_page(request: Request, settings: Any, who: Any) -> Page:
    page = basic_page(request, settings, who)
    require_admin(page)
    return page


@router.post(PATH + "/outbox/{outbox_id}/resend", response_model=None)
async def admin_delivery_resend(
    outbox_id: int,
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    database: DatabaseDep,
    address: ClientAddress,
) -> Response:
    page = _admin_page(request, settings, who)

    def run() -> None:
        with database.session() as session:
            site_channels.resend(session, outbox_id)
            audit.add(
                session, audit.Event.of(who, "delivery.resend", f"outbox:{outbox_id}", address)
            )

    try:
        await run_in_threadpool(run)
    except PortalError as exc:
        return await _render(page, database, status=exc.status, error=exc.message)
    return RedirectResponse(f"{PATH}?done=resent", status_code=303)


@router.post(PATH + "/channels", response_model=None)
async def admin_delivery_add_channel(
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    database: DatabaseDep,
    address: ClientAddress,
    kind: Field = "",
    name: Field = "",
    target: Field = "",
    language: Field = "en",
    secret: Field = "",
) -> Response:
    page = _admin_page(request, settings, who)
    form = {"kind": kind, "name": name, "target": target, "language": language}
    try:
        data = SiteChannelIn.model_validate(
            {
                "kind": kind,
                "name": name,
                "target": target,
                "language": language,
                "secret": secret or None,
            }
        )
    except ValidationError as exc:
        return await _render(page, database, status=422, error=said(page, exc), form=form)

    def run() -> site_channels.CreatedChannel:
        with database.session() as session:
            created = site_channels.create(
                session, settings, UrlGuard.from_settings(settings), data
            )
            target = f"channel:{created.channel.id}"
            audit.add(session, audit.Event.of(who, "delivery.channel.create", target, address))
            return created

    try:
        created = await run_in_threadpool(run)
    except PortalError as exc:
        return await _render(page, database, status=exc.status, error=exc.message, form=form)
    if created.secret is not None and not secret:
        # The secret the portal made is shown once, on this answer (not in a redirect).
        return await _render(page, database, secret=created.secret)
    return RedirectResponse(f"{PATH}?done=added", status_code=303)


@router.post(PATH + "/channels/{channel_id}/{action}", response_model=None)
async def admin_delivery_change_channel(
    channel_id: int,
    action: str,
    request: Request,
    settings: SettingsDep,
    who: FormUser,
    database: DatabaseDep,
    address: ClientAddress,
) -> Response:
    page = _admin_page(request, settings, who)
    if action not in ("enable", "disable", "delete"):
        return await _render(page, database, status=404, error=page.gettext(N_("Unknown action.")))

    def run() -> None:
        with database.session() as session:
            if action == "delete":
                site_channels.delete(session, channel_id)
            else:
                patch = SiteChannelPatch(enabled=action == "enable")
                guard = UrlGuard.from_settings(settings)
                site_channels.update(session, settings, guard, channel_id, patch)
            target = f"channel:{channel_id}"
            event = audit.Event.of(who, f"delivery.channel.{action}", target, address)
            audit.add(session, event)

    try:
        await run_in_threadpool(run)
    except PortalError as exc:
        return await _render(page, database, status=exc.status, error=exc.message)
    return RedirectResponse(f"{PATH}?done={action}", status_code=303)
