"""``/node/{session}/...``: the reverse proxy to a web app session (HTTP and WebSocket).

Unlike Open OnDemand's ``/node/{host}/{port}``, the URL names a *session*, never a
host or port: the target is looked up for the asking user (owner only, running
only) in ``services.sessions``, so no encoding of the path can reach anything else.
The path is passed on unchanged, because the app was started with this prefix as
its base URL (Jupyter's ``base_url``). The portal's own cookies and credentials are
taken out of the request, and the app's token is added, so the app never sees the
portal's session and no URL the browser is given carries the app's token. Requests
go over mutual TLS (``services.node_tls``): the app accepts only the portal's client
certificate, and the portal only the certificate the session's job made, so the
token alone opens nothing and is never sent to anything but that server.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from hpcportal.api.live import FOREIGN_ORIGIN, authenticate, refuse
from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.dependencies import ProxyUser, SessionContextDep, session_context
from hpcportal.errors import BadGateway, Forbidden, PortalError
from hpcportal.services import auth, proxy
from hpcportal.services import sessions as service
from hpcportal.services.live import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_AUTHENTICATED,
    origin_allowed,
)
from hpcportal.services.sessions import Target

log = logging.getLogger(__name__)
router = APIRouter(tags=["interactive apps"], include_in_schema=False)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
_DROP_REQUEST = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "cookie",
        "x-csrf-token",
        "content-length",
    }
)
_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",  # the body is streamed (chunked); its encoding passes as is
    }
)


class SessionClients:
    """Pooled httpx clients, one per session's server certificate.

    A client's TLS context trusts one session's certificate only, so sessions cannot
    share a client; each keeps its connection pool while used. The least recently
    used is closed beyond ``limit`` (after a grace period, for a stream in flight).
    Kept as ``AppServices.proxy_clients``; the app factory builds it and closes it at
    shutdown.
    """

    GRACE_SECONDS = 600.0

    def __init__(self, settings: Settings, limit: int = 256) -> None:
        self.timeout = httpx.Timeout(300.0, connect=settings.proxy_connect_timeout)
        self.limit = limit
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._retired: dict[asyncio.Task[None], httpx.AsyncClient] = {}

    def get(self, target: Target) -> httpx.AsyncClient:
        key = f"{target.session_id}:{target.server_cert}"
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, trust_env=False, verify=target.tls
            )
        self._clients.move_to_end(key)
        while len(self._clients) > self.limit:
            _, old = self._clients.popitem(last=False)
            task = asyncio.create_task(self._close_later(old))
            self._retired[task] = old
            task.add_done_callback(self._retired.pop)
        return client

    async def _close_later(self, client: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.GRACE_SECONDS)
        await client.aclose()

    async def aclose(self) -> None:
        """Close every client, the retired ones still in their grace period too."""
        clients = list(self._clients.values()) + list(self._retired.values())
        for task in list(self._retired):
            task.cancel()
        self._clients = OrderedDict()
        for client in clients:
            await client.aclose()


def _client(request: Request, settings: Settings, target: Target) -> httpx.AsyncClient:
    """The pooled client for this session (from ``AppServices.proxy_clients``)."""
    return services_of(request).proxy_clients.get(target)


def _portal_cookies(settings: Settings) -> frozenset[str]:
    return frozenset({settings.cookie_name, auth.CSRF_COOKIE})


def _app_cookies(header: str | None, settings: Settings) -> str | None:
    """The request's cookies without the portal's own (its session above all)."""
    if not header:
        return None
    portal = _portal_cookies(settings)
    kept = [c.strip() for c in header.split(";") if c.split("=", 1)[0].strip() not in portal]
    return "; ".join(c for c in kept if c) or None


def upstream_headers(
    headers: list[tuple[str, str]], target: Target, settings: Settings
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        if name.lower() not in _DROP_REQUEST and not name.lower().startswith("sec-websocket"):
            out[name] = value
    cookies = _app_cookies("; ".join(v for k, v in headers if k.lower() == "cookie"), settings)
    if cookies:
        out["Cookie"] = cookies
    out["Authorization"] = f"token {target.secret}"
    out["Host"] = f"{target.host}:{target.port}"
    if "origin" in {k.lower() for k in out}:
        out = {k: v for k, v in out.items() if k.lower() != "origin"}
        out["Origin"] = f"https://{target.host}:{target.port}"
    return out


def _response_headers(response: httpx.Response, settings: Settings) -> list[tuple[str, str]]:
    portal = _portal_cookies(settings)
    out = []
    for name, value in response.headers.multi_items():
        lower = name.lower()
        if lower in _DROP_RESPONSE:
            continue
        if lower == "set-cookie" and value.split("=", 1)[0].strip() in portal:
            continue  # an app may not set (or clear) the portal's cookies
        out.append((name, value))
    return out


def _upstream_url(scheme: str, target: Target, raw_path: bytes, query: bytes) -> str:
    path = raw_path.decode("latin-1")
    url = f"{scheme}://{target.host}:{target.port}{path}"
    return f"{url}?{query.decode('latin-1')}" if query else url


@router.api_route("/node/{session_id}", methods=METHODS)
async def without_slash(session_id: str, request: Request) -> RedirectResponse:
    """Apps expect their base URL with its slash."""
    del request
    return RedirectResponse(f"/node/{session_id}/", status_code=308)


@router.api_route("/node/{session_id}/{path:path}", methods=METHODS)
async def web_proxy(
    session_id: str, path: str, request: Request, who: ProxyUser, ctx: SessionContextDep
) -> StreamingResponse:
    """Forward one request to the session's web app and stream its answer back."""
    del path  # the raw path is forwarded as it came (the app knows its prefix)
    settings = ctx.submit.settings
    target = await run_in_threadpool(service.target, ctx, who, session_id, "web")
    url = _upstream_url("https", target, request.scope["raw_path"], request.scope["query_string"])
    client = _client(request, settings, target)
    upstream_request = client.build_request(
        request.method,
        url,
        headers=upstream_headers(list(request.headers.items()), target, settings),
        content=_body(request),
    )
    try:
        response = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        raise BadGateway(f"The session's app does not answer ({type(exc).__name__}).") from None
    return _streaming(response, settings)


def _streaming(response: httpx.Response, settings: Settings) -> StreamingResponse:
    out = StreamingResponse(
        response.aiter_raw(),
        status_code=response.status_code,
        background=BackgroundTask(response.aclose),
    )
    out.raw_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in _response_headers(response, settings)
    ]
    return out


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.websocket("/node/{session_id}/{path:path}")
async def web_proxy_socket(websocket: WebSocket, session_id: str, path: str) -> None:
    """Forward a WebSocket (Jupyter's kernel channels) to the session's web app."""
    del path
    hub = services_of(websocket).live
    settings = hub.settings
    if not origin_allowed(
        websocket.headers.get("origin"),
        websocket.url.scheme,
        websocket.headers.get("host"),
        hub.allowed_origins,
    ):
        await refuse(websocket, CLOSE_FORBIDDEN, 403, Forbidden(FOREIGN_ORIGIN))
        return
    ctx = session_context(websocket)
    asked = [
        p.strip()
        for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if p.strip()
    ]
    try:
        identity = await authenticate(websocket, settings, hub)
        target = await run_in_threadpool(service.target, ctx, identity.principal, session_id, "web")
        url = _upstream_url(
            "wss", target, websocket.scope["raw_path"], websocket.scope["query_string"]
        )
        headers = upstream_headers(list(websocket.headers.items()), target, settings)
        headers.pop("Host", None)
        upstream = await proxy.open_upstream(
            url,
            tls=target.tls,
            timeout=settings.proxy_connect_timeout,
            subprotocols=asked,
            headers=headers,
        )
    except PortalError as exc:
        code = CLOSE_NOT_AUTHENTICATED if exc.status == 401 else CLOSE_FORBIDDEN
        await refuse(websocket, code, exc.status, exc)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    await proxy.relay(websocket, upstream)
