"""``/sessions``: launch, follow, extend, relaunch, share and end interactive sessions.

Also the VNC WebSockets: ``/sessions/{id}/vnc`` for the owner (full control) and
``/shares/{share_id}/vnc`` for whoever opened a view-only link (its cookie, see
``services.share_links``: no token in the URL). Both authenticate to the
session's VNC server inside the portal, so the browser never holds its password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
    status,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from hpcportal.api.live import FOREIGN_ORIGIN, authenticate, refuse
from hpcportal.api.params import Int64, Line
from hpcportal.composition import services_of
from hpcportal.db.session import Database
from hpcportal.dependencies import (
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    SessionContextDep,
    session_context,
)
from hpcportal.errors import BadGateway, Forbidden, PortalError
from hpcportal.services import audit, proxy, rfb, share_links
from hpcportal.services import sessions as service
from hpcportal.services.identity import Principal
from hpcportal.services.live import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_AUTHENTICATED,
    LiveHub,
    origin_allowed,
)
from hpcportal.services.sessions import SessionContext, SessionView, Target

log = logging.getLogger(__name__)
router = APIRouter(tags=["interactive apps"])
T = TypeVar("T")


@dataclass(frozen=True)
class Actions:
    """What a changing request needs: who asks, the sessions context, the audit log and
    the live hub. ``run`` does one action as that person, writes its outcome to the
    audit log (also when it fails) and tells their other tabs of the session's change."""

    who: Principal
    ctx: SessionContext
    database: Database
    address: str
    hub: LiveHub

    async def run(self, action: str, target: str, work: Callable[..., T], *args: Any) -> T:
        try:
            result = await run_in_threadpool(work, self.ctx, self.who, *args)
        except Exception as exc:
            await self._audit(action, target, exc)
            raise
        await self._audit(action, target, None)
        return result

    async def _audit(self, action: str, target: str, error: Exception | None) -> None:
        """In its own transaction and a worker thread; never changes the answer."""
        await audit.log(
            self.database, audit.Event.of(self.who, action, target, self.address, error)
        )

    def tell(self, session: SessionView) -> SessionView:
        self.hub.push_session(self.who.username, session)
        if session.job_id is not None:  # its job changed: read it again now
            self.hub.snapshot.request_refresh(session.job_id)
        return session


async def get_actions(
    request: Request,
    who: CurrentUser,
    ctx: SessionContextDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Actions:
    return Actions(who, ctx, database, address, services_of(request).live)


ActionsDep = Annotated[Actions, Depends(get_actions)]


class LaunchBody(BaseModel):
    app_id: Line = Field(max_length=64)
    options: dict[Line, Int64 | Line] = {}


class ExtendBody(BaseModel):
    hours: int = Field(ge=1, le=24)


class ShareOut(BaseModel):
    token: str
    url: str  # /shares/open#<token>: the token only in the fragment, never sent


def _accepted_if_waiting(session: SessionView, response: Response) -> SessionView:
    """201 once Slurm gave the job; 202 while the session waits for Slurm to confirm
    it (``creating``, no job id yet): the portal finds or submits it, once."""
    if session.state == "creating" and session.job_id is None:
        response.status_code = status.HTTP_202_ACCEPTED
    return session


@router.post(
    "/sessions",
    response_model=SessionView,
    status_code=status.HTTP_201_CREATED,
    responses={202: {"description": "Slurm has not confirmed the job yet; follow the session"}},
)
async def launch(
    body: Annotated[LaunchBody, Body()], act: ActionsDep, response: Response
) -> SessionView:
    """Start an app as a Slurm job (as you); follow it with GET or the live socket."""
    options = dict(body.options)
    session = await act.run(
        "session.launch", f"app:{body.app_id}", service.launch, body.app_id, options
    )
    return _accepted_if_waiting(act.tell(session), response)


@router.get("/sessions", response_model=list[SessionView])
async def list_sessions(
    who: CurrentUser, ctx: SessionContextDep, active: bool = False
) -> list[SessionView]:
    """Your sessions, newest first (``active=true``: only those not ended)."""
    return await run_in_threadpool(service.list_sessions, ctx, who, active_only=active)


@router.get("/sessions/{session_id}", response_model=SessionView)
async def get_session(session_id: str, who: CurrentUser, ctx: SessionContextDep) -> SessionView:
    return await run_in_threadpool(service.get_session, ctx, who, session_id)


@router.get("/sessions/{session_id}/log", response_class=PlainTextResponse)
async def session_log(session_id: str, who: CurrentUser, ctx: SessionContextDep) -> str:
    """The end of the session job's log, read as you."""
    return await run_in_threadpool(service.output_tail, ctx, who, session_id)


@router.delete("/sessions/{session_id}", response_model=SessionView)
async def delete_session(session_id: str, act: ActionsDep) -> SessionView:
    """End the session: its job is cancelled as you, which ends every process of it."""
    target = f"session:{session_id}"
    return act.tell(await act.run("session.delete", target, service.delete, session_id))


@router.post("/sessions/{session_id}/extend", response_model=SessionView)
async def extend_session(
    session_id: str, body: Annotated[ExtendBody, Body()], act: ActionsDep
) -> SessionView:
    """Ask Slurm (as you) for more time; Slurm's refusal comes back as it is."""
    target = f"session:{session_id}"
    session = await act.run("session.extend", target, service.extend, session_id, body.hours)
    return act.tell(session)


@router.post(
    "/sessions/{session_id}/relaunch",
    response_model=SessionView,
    status_code=status.HTTP_201_CREATED,
    responses={202: {"description": "Slurm has not confirmed the job yet; follow the session"}},
)
async def relaunch_session(session_id: str, act: ActionsDep, response: Response) -> SessionView:
    """A new session of the same app with the same settings (409 while this one still
    waits for Slurm to confirm its job)."""
    target = f"session:{session_id}"
    session = await act.run("session.relaunch", target, service.relaunch, session_id)
    return _accepted_if_waiting(act.tell(session), response)


@router.post("/sessions/{session_id}/share", response_model=ShareOut)
async def share_session(session_id: str, act: ActionsDep) -> ShareOut:
    """A view-only link to your desktop session; a new one replaces the old one."""
    token = await act.run("session.share", f"session:{session_id}", service.share, session_id)
    act.tell(await run_in_threadpool(service.get_session, act.ctx, act.who, session_id))
    return ShareOut(token=token, url=share_links.link(token))


@router.delete("/sessions/{session_id}/share", response_model=SessionView)
async def revoke_share(session_id: str, act: ActionsDep) -> SessionView:
    """Revoke the view-only link; viewers are disconnected and cannot come back."""
    target = f"session:{session_id}"
    return act.tell(await act.run("session.unshare", target, service.revoke_share, session_id))


# --- the VNC WebSockets ------------------------------------------------------------------


async def _open(
    websocket: WebSocket, find: Callable[[Principal], Target], share_digest: str | None = None
) -> None:
    """Check origin and login, find the target, authenticate upstream, greet the
    browser, rotate a spent full-control password, relay."""
    hub = services_of(websocket).live
    settings = hub.settings
    origin = websocket.headers.get("origin")
    if not origin_allowed(
        origin, websocket.url.scheme, websocket.headers.get("host"), hub.allowed_origins
    ):
        await refuse(websocket, CLOSE_FORBIDDEN, 403, Forbidden(FOREIGN_ORIGIN))
        return
    try:
        identity = await authenticate(websocket, settings, hub)
        target, upstream = await _connect(find, identity.principal, settings.proxy_connect_timeout)
    except PortalError as exc:
        code = CLOSE_NOT_AUTHENTICATED if exc.status == 401 else CLOSE_FORBIDDEN
        await refuse(websocket, code, exc.status, exc)
        return
    asked = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    await websocket.accept(subprotocol="binary" if "binary" in asked else None)
    try:
        await proxy.greet_browser(websocket, upstream)
    except (rfb.RfbError, WebSocketDisconnect) as exc:
        log.info("session %s: the browser left the VNC handshake: %s", target.session_id, exc)
        await upstream.connection.close()
        return
    except Exception:
        await upstream.connection.close()
        raise
    ctx = session_context(websocket)
    if not target.view_only:
        # The password just used is spent: whoever might have seen it cannot reuse it.
        try:
            await run_in_threadpool(service.rotate_passwords, ctx, target.session_id)
        except PortalError as exc:
            log.warning("session %s: password rotation failed: %s", target.session_id, exc.message)
    still_valid = None
    if target.view_only and share_digest is not None:
        digest = share_digest

        def still_valid() -> bool:
            return service.share_still_valid(ctx, target.session_id, digest)

    await proxy.relay_vnc(websocket, upstream, still_valid=still_valid)


async def _connect(
    find: Callable[[Principal], Target], who: Principal, timeout: float
) -> tuple[Target, proxy.VncUpstream]:
    """Authenticate upstream; if the password was just rotated by a connection opened
    at the same moment (another tab), look the session up again and retry once."""
    target = await run_in_threadpool(find, who)
    try:
        return target, await proxy.connect_vnc(target, timeout=timeout)
    except BadGateway as exc:
        if not isinstance(exc.__cause__, rfb.RfbError):
            raise
    target = await run_in_threadpool(find, who)
    return target, await proxy.connect_vnc(target, timeout=timeout)


@router.websocket("/sessions/{session_id}/vnc")
async def vnc_socket(websocket: WebSocket, session_id: str) -> None:
    """The owner's full-control VNC connection (noVNC speaks RFB over it)."""
    ctx = session_context(websocket)
    await _open(websocket, lambda who: service.target(ctx, who, session_id, "vnc"))


@router.websocket("/shares/{share_id}/vnc")
async def shared_vnc_socket(websocket: WebSocket, share_id: str) -> None:
    """A view-only VNC connection through a share link (any logged-in person whose
    browser opened the link, so holds its cookie)."""
    ctx = session_context(websocket)
    cookie = websocket.cookies.get(share_links.COOKIE)
    digest = share_links.digest_from_cookie(ctx.submit.settings, cookie, share_id)
    await _open(websocket, lambda _who: service.shared_target(ctx, digest), digest)
