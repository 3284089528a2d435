"""Interactive apps and their sessions: the catalog with launch forms (``/apps``), the
person's sessions (``/sessions``), one session (``/sessions/{id}``: noVNC or the web
app's link), and view-only share links (``/shares/...``).

Sessions are read through ``services.sessions`` and shares through
``services.share_links``, the calls the API's ``/apps``, ``/sessions`` and
``/shares`` routes make. Launching, stopping and sharing post to the API.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from hpcportal.config import Settings
from hpcportal.dependencies import (
    ApiTokenCacheDep,
    DatabaseDep,
    SessionContextDep,
    SettingsDep,
    SnapshotDep,
)
from hpcportal.errors import PortalError
from hpcportal.services import sessions as session_service
from hpcportal.services import share_links
from hpcportal.services.identity import Principal
from hpcportal.services.sessions import SessionContext, SessionView
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.visibility import for_snapshot
from hpcportal.web import i18n
from hpcportal.web.common import (
    Page,
    PageDep,
    PageError,
    PublicPageDep,
    basic_page,
    current_snapshot,
    get_page_user,
    page_error,
)
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

#: How many failed sessions' logs the sessions page reads at once (the rest on demand).
SESSION_LOGS_SHOWN: Final = 5


def _app_text(page: Page, text: str | None) -> str:
    """An app's own text (name, label...) in the page's language when the catalog has
    it (the shipped apps' texts are in it); a site's own text stays as written."""
    return page.gettext(text) if text else ""


def _partition_choices(snap: ClusterSnapshot, who: Principal) -> tuple[list[str], str | None]:
    if for_snapshot(who, snap).hides("partitions"):
        return [], None
    visible = [p for p in snap.partitions if not p.hidden]
    default = next((p.name for p in visible if p.is_default), None)
    return [p.name for p in visible], default


def app_cards(
    page: Page, ctx: SessionContext, who: Principal, partitions: list[str], default: str | None
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The apps ``who`` may launch, by category, each with its launch form's fields.

    A partition field offers the cluster's partitions with the app's default chosen
    (the cluster's default when the app names one this cluster lacks).
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for app in ctx.catalog.visible(who):
        d = app.definition
        fields = []
        for f in d.form:
            item: dict[str, Any] = {
                "name": f.name,
                "type": f.type,
                "id": f"app-{d.id}-{f.name}",
                "label": _app_text(page, f.label),
                "help": _app_text(page, f.help),
                "default": f.default,
                "min": f.min,
                "max": f.max,
                "options": list(f.options),
            }
            if f.type == "partition":
                wanted = str(f.default)
                choices = partitions or [wanted]
                item["options"] = choices
                item["default"] = wanted if wanted in choices else (default or choices[0])
            fields.append(item)
        groups[d.category].append(
            {
                "id": d.id,
                "name": _app_text(page, d.name),
                "description": _app_text(page, d.description),
                "connection": d.connection,
                "icon_url": f"/api/v1/apps/{d.id}/icon" if app.icon_path() else None,
                "fields": fields,
            }
        )
    return [
        (_app_text(page, category), apps)
        for category, apps in sorted(groups.items(), key=lambda kv: kv[0].lower())
    ]


def _app_icons(ctx: SessionContext, who: Principal) -> dict[str, str]:
    return {a.id: f"/api/v1/apps/{a.id}/icon" for a in ctx.catalog.visible(who) if a.icon_path()}


def _session_error(page: Page, exc: PortalError) -> PageError:
    """Someone else's session is a 403 page, a missing one a 404, in the page's language."""
    if exc.status == 403:
        return PageError(
            403,
            page.gettext(N_("This session belongs to someone else.")),
            title=page.gettext(N_("Not your session")),
        )
    if exc.status == 404:
        return PageError(
            404,
            page.gettext(N_("There is no such session.")),
            title=page.gettext(N_("No such session")),
        )
    return page_error(exc)


def _session_json(page: Page, session: SessionView) -> dict[str, Any]:
    """What the page's script starts from: the API's view plus the translated app name."""
    return {**session.model_dump(mode="json"), "app_label": _app_text(page, session.app_name)}


def _session_context(page: Page, ctx: SessionContext, who: Principal) -> dict[str, Any]:
    return {
        "app_text": lambda text: _app_text(page, text),
        "icons": _app_icons(ctx, who),
        "session_labels": i18n.SESSION_STATE_LABELS,
        "active_states": session_service.ACTIVE,
    }


@router.get("/apps", response_class=HTMLResponse)
async def apps_page(page: PageDep, snapshot: SnapshotDep, ctx: SessionContextDep) -> HTMLResponse:
    """The interactive app catalog by category, a launch form per app."""
    who = page.user
    assert who is not None
    snap = await current_snapshot(page, snapshot)
    partitions, default = _partition_choices(snap, who)
    active = await run_in_threadpool(session_service.list_sessions, ctx, who, active_only=True)
    return page.render(
        "apps.html",
        page_key="apps",
        groups=app_cards(page, ctx, who, partitions, default),
        active_count=len(active),
    )


def _logs(ctx: SessionContext, who: Principal, sessions: list[SessionView]) -> dict[str, str]:
    failed = [s for s in sessions if s.state == "failed"][:SESSION_LOGS_SHOWN]
    return {s.id: session_service.output_tail(ctx, who, s.id) for s in failed}


@router.get("/sessions", response_class=HTMLResponse)
async def sessions_page(request: Request, page: PageDep, ctx: SessionContextDep) -> HTMLResponse:
    """A card per session, active ones first; htmx asks for the list alone."""
    who = page.user
    assert who is not None
    items = await run_in_threadpool(session_service.list_sessions, ctx, who)
    logs = await run_in_threadpool(_logs, ctx, who, items)
    fragment = request.headers.get("HX-Request") and not request.headers.get(
        "HX-History-Restore-Request"
    )
    return page.render(
        "sessions_list.html" if fragment else "sessions.html",
        page_key="sessions",
        active=[s for s in items if s.state in session_service.ACTIVE],
        ended=[s for s in items if s.state not in session_service.ACTIVE],
        logs=logs,
        **_session_context(page, ctx, who),
    )


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def session_page(session_id: str, page: PageDep, ctx: SessionContextDep) -> HTMLResponse:
    """One session: the desktop (noVNC) or the web app's link, state, time, actions."""
    who = page.user
    assert who is not None
    try:
        session = await run_in_threadpool(session_service.get_session, ctx, who, session_id)
    except PortalError as exc:
        raise _session_error(page, exc) from None
    log_text = None
    if session.state == "failed":
        log_text = await run_in_threadpool(session_service.output_tail, ctx, who, session.id)
    raises_any_limit = session.state in ("pending", "running") and await run_in_threadpool(
        session_service.raises_any_limit, ctx, who
    )
    return page.render(
        "session.html",
        page_key="sessions",
        s=session,
        data=_session_json(page, session),
        log_text=log_text,
        raises_any_limit=raises_any_limit,
        **_session_context(page, ctx, who),
    )


def _share_digest(request: Request, settings: Settings, sid: str) -> str | None:
    cookie = request.cookies.get(share_links.COOKIE)
    return share_links.digest_from_cookie(settings, cookie, sid)


def _set_share_cookies(response: Response, settings: Settings, digest: str) -> None:
    """The share's cookie on its page's path and its WebSocket's path, nowhere else."""
    value = share_links.cookie_value(settings, digest)
    for path in share_links.cookie_paths(digest):
        response.set_cookie(
            share_links.COOKIE,
            value,
            max_age=settings.share_cookie_seconds,
            path=path,
            secure=settings.cookie_secure,
            httponly=True,
            samesite="lax",
        )
    response.headers["Cache-Control"] = "no-store"


@router.get(share_links.OPEN_PATH, response_class=HTMLResponse)
async def share_open_page(page: PublicPageDep) -> HTMLResponse:
    """Where a share link (``/shares/open#<token>``) lands. Its script posts the token
    from the fragment, which the browser never sends, to the route below, then goes on
    to the token-free page the answer names."""
    return page.render("share_open.html", page_key="")


class ShareOpen(BaseModel):
    token: str = Field(max_length=128)


@router.post(share_links.OPEN_PATH)
async def share_open(body: ShareOpen, settings: SettingsDep, database: DatabaseDep) -> Response:
    """Exchange a link's token for the share's cookie; ``{"url": "/shares/<id>"}``."""
    digest = await run_in_threadpool(share_links.redeem, database, body.token)
    if digest is None:
        return JSONResponse({"status": "gone"}, 404, headers={"Cache-Control": "no-store"})
    response = JSONResponse({"url": share_links.page_path(digest)})
    _set_share_cookies(response, settings, digest)
    return response


@router.get("/shares/{key}", response_class=HTMLResponse)
async def share_page(
    key: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    cache: ApiTokenCacheDep,
) -> Response:
    """A view-only desktop, ``/shares/<share id>``, for a logged-in person whose browser
    opened the link (the share's cookie). A link of the older form ``/shares/<token>``
    is exchanged for that cookie and sent there, before any login, so the token is in
    no ``next=`` address."""
    if not share_links.SHARE_ID.fullmatch(key):
        digest = await run_in_threadpool(share_links.redeem, database, key)
        if digest is not None:
            response = RedirectResponse(share_links.page_path(digest), status_code=303)
            _set_share_cookies(response, settings, digest)
            return response
    page = basic_page(request, settings, await get_page_user(request, settings, database, cache))
    sid = key if share_links.SHARE_ID.fullmatch(key) else ""
    shared = await run_in_threadpool(
        share_links.shared_session, database, _share_digest(request, settings, sid)
    )
    return page.render(
        "share.html",
        page_key="",
        shared=shared,
        share_status=share_links.share_status(shared),
        share_id=sid,
        app_text=lambda text: _app_text(page, text),
    )


@router.get("/shares/{sid}/status")
async def share_status_answer(
    sid: str, request: Request, page: PageDep, settings: SettingsDep, database: DatabaseDep
) -> Response:
    """``{"status": "ready" | "waiting" | "gone"}``: whether the share still opens."""
    del page  # logged-in people only, like the page itself
    shared = await run_in_threadpool(
        share_links.shared_session, database, _share_digest(request, settings, sid)
    )
    return JSONResponse(
        {"status": share_links.share_status(shared)}, headers={"Cache-Control": "no-store"}
    )
