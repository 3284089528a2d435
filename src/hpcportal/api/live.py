"""``GET /ws``: the live-update WebSocket (protocol in ``services.live``).

Before accepting, the upgrade request must come from the portal's own origin (or an
``allowed_origins`` one) and be authenticated like any API request: the session
cookie (browsers send it on the upgrade), or ``Authorization: Bearer`` with a login
JWT or an API token. A refusal is an HTTP 403 (foreign origin) or 401 (not logged
in) answer where the server can send one, else a close with 4403 / 4401.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.dependencies import api_token_cache
from hpcportal.errors import Forbidden, NotAuthenticated, PortalError
from hpcportal.services import api_tokens, auth
from hpcportal.services.live import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_AUTHENTICATED,
    LiveHub,
    LiveIdentity,
    origin_allowed,
)

router = APIRouter(tags=["live"])

FOREIGN_ORIGIN = "This page's origin may not open the portal's live updates."


def _bearer(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise NotAuthenticated("Use 'Authorization: Bearer <token>'.")
    return credential.strip()


async def authenticate(websocket: WebSocket, settings: Settings, hub: LiveHub) -> LiveIdentity:
    """Who opens the socket: the same checks as ``CurrentUser`` (``dependencies``) for a GET.

    No CSRF header here: the upgrade is a GET, and the Origin check is what keeps
    other sites' pages out.
    """
    bearer = _bearer(websocket)
    if bearer and api_tokens.looks_like_api_token(bearer):
        cache = api_token_cache(websocket)
        token = cache.lookup(bearer)
        if token is None:
            token = await run_in_threadpool(api_tokens.authenticate, hub.database, cache, bearer)
        api_tokens.check_scope(api_tokens.Authentication.for_api_token(token), "GET")
        principal = await run_in_threadpool(api_tokens.resolve_principal, settings, token.username)
        return LiveIdentity(principal, token_id=token.id, expires_at=token.expires_at)
    credential = bearer or websocket.cookies.get(settings.cookie_name)
    if not credential:
        raise NotAuthenticated()
    claims = auth.decode_token(settings, credential)
    if hub.revocations.needs_sync():
        await run_in_threadpool(_sync_revocations, hub)
    if claims.jti in hub.revocations:
        raise NotAuthenticated(auth.SESSION_ENDED)
    principal = await run_in_threadpool(auth.resolve_principal, settings, claims)
    return LiveIdentity(principal, jti=claims.jti, expires_at=claims.expires_at)


def _sync_revocations(hub: LiveHub) -> None:
    with hub.database.session() as session:
        hub.revocations.sync(session)


async def refuse(websocket: WebSocket, close_code: int, status: int, error: PortalError) -> None:
    """Turn the upgrade down without accepting: an HTTP answer if the server can send
    one (``websocket.http.response``), else a close before the handshake."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = {"detail": error.message, "code": error.code}
        await websocket.send_denial_response(JSONResponse(body, status, headers=error.headers))
    else:
        await websocket.close(close_code, error.message)


async def refused_origin(websocket: WebSocket, hub: LiveHub) -> bool:
    """Refuse, before accepting, a WebSocket opened from a foreign ``Origin`` (cross-site
    WebSocket hijacking); True when it was refused and the caller must stop."""
    allowed = origin_allowed(
        websocket.headers.get("origin"),
        websocket.url.scheme,
        websocket.headers.get("host"),
        hub.allowed_origins,
    )
    if not allowed:
        await refuse(websocket, CLOSE_FORBIDDEN, 403, Forbidden(FOREIGN_ORIGIN))
    return not allowed


@router.websocket("/ws")
async def live_updates(websocket: WebSocket) -> None:
    """Live jobs, nodes, cluster summary, notifications and job output (JSON frames)."""
    hub = services_of(websocket).live
    settings = hub.settings
    if await refused_origin(websocket, hub):
        return
    try:
        identity = await authenticate(websocket, settings, hub)
    except PortalError as exc:
        status = 403 if exc.status == 403 else 401
        code = CLOSE_FORBIDDEN if status == 403 else CLOSE_NOT_AUTHENTICATED
        await refuse(websocket, code, status, exc)
        return
    await hub.serve(websocket, identity)
