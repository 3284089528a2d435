"""Shared FastAPI dependencies, in ``Annotated`` style, for routers and pages alike.

Routers (``api/``) and pages (``web/``) declare what they need (``settings:
SettingsDep``, ``user: CurrentUser``) and never reach into the app themselves: every
part comes from the app's one ``AppServices`` (``composition.services_of``). This
module sits below both, beside ``composition.py``, so that a page takes its request
plumbing from here and imports no ``api/`` module at all (``web/`` and ``api/`` are
siblings: neither imports the other, checked by ``tests/unit/test_import_rules.py``).
It imports services, ``composition`` and ``config``, never a router or a page.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from hpcportal.runas import RunAs
from hpcportal.services import api_tokens, auth
from hpcportal.services.apptainer import ApptainerCatalog
from hpcportal.services.identity import Principal
from hpcportal.services.live import origin_allowed
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.sessions import SessionContext
from hpcportal.services.snapshot import SnapshotService
from hpcportal.services.submit import SubmitContext
from hpcportal.slurm.adapter import SlurmAdapter

#: Where the OpenAPI "Authorize" button posts the login form (router prefix + path).
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 (a URL, not a secret)


async def get_settings_dep(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    return services_of(request).settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_database(request: Request) -> Database:
    """The process's database handle, for code that manages its own sessions."""
    return services_of(request).database


DatabaseDep = Annotated[Database, Depends(get_database)]


def get_db(database: DatabaseDep) -> Iterator[Session]:
    """One session per request, committed (or rolled back) before the answer is sent."""
    with database.session() as session:
        yield session


# scope="function": the commit happens before the response, so a failed commit is an
# error the client sees rather than a silent loss after a 200.
DbDep = Annotated[Session, Depends(get_db, scope="function")]

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def get_revocations(request: Request) -> auth.RevocationList:
    return services_of(request).revocations


def api_token_cache(connection: HTTPConnection) -> api_tokens.ApiTokenCache:
    """The process's cache of checked API tokens, for requests and WebSockets alike."""
    return services_of(connection).api_token_cache


async def get_api_token_cache(request: Request) -> api_tokens.ApiTokenCache:
    return api_token_cache(request)


ApiTokenCacheDep = Annotated[api_tokens.ApiTokenCache, Depends(get_api_token_cache)]


async def get_authentication(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    cache: ApiTokenCacheDep,
    bearer: Annotated[str | None, Depends(_bearer)],
) -> api_tokens.Authentication:
    """Who is asking and how: a login session (JWT, bearer or cookie) or an API token.

    ``Authorization: Bearer hpcp_...`` is an API token: checked by its hash (a recent
    valid answer comes from memory, with no query), then its scopes against the
    request's method (``read`` for GET/HEAD/OPTIONS, ``write`` for the rest). Anything
    else goes through the login session path unchanged.
    """
    if bearer and api_tokens.looks_like_api_token(bearer):
        token = cache.lookup(bearer)
        if token is None:
            token = await run_in_threadpool(api_tokens.authenticate, database, cache, bearer)
        authentication = api_tokens.Authentication.for_api_token(token)
        api_tokens.check_scope(authentication, request.method)
        return authentication
    claims = await _session_claims(request, settings, database, bearer)
    return api_tokens.Authentication.for_session(claims)


async def _session_claims(
    request: Request,
    settings: Settings,
    database: Database,
    bearer: str | None,
    *,
    csrf: bool = True,
) -> auth.TokenClaims:
    """The verified, unrevoked token from ``Authorization: Bearer`` or the session cookie.

    A cookie is sent by the browser on its own, so cookie-authenticated unsafe
    requests must also pass the CSRF check; a bearer header cannot be forged that way.
    """
    via_cookie = not bearer
    token = bearer or request.cookies.get(settings.cookie_name)
    if not token:
        raise NotAuthenticated()
    claims = auth.decode_token(settings, token)
    revocations = get_revocations(request)
    if revocations.needs_sync():
        await run_in_threadpool(_sync_revocations, revocations, database)
    if claims.jti in revocations:
        raise NotAuthenticated(auth.SESSION_ENDED)
    if via_cookie and csrf:
        auth.check_csrf(
            request.method,
            request.cookies.get(auth.CSRF_COOKIE),
            request.headers.get(auth.CSRF_HEADER),
        )
    return claims


def _sync_revocations(revocations: auth.RevocationList, database: Database) -> None:
    with database.session() as session:
        revocations.sync(session)


AuthenticationDep = Annotated[api_tokens.Authentication, Depends(get_authentication)]


async def get_token_claims(authentication: AuthenticationDep) -> auth.TokenClaims:
    """The login session's verified claims; an API token gets 403 (it has no session)."""
    return api_tokens.require_session(authentication)


TokenClaimsDep = Annotated[auth.TokenClaims, Depends(get_token_claims)]


async def get_current_principal(
    authentication: AuthenticationDep, settings: SettingsDep
) -> Principal:
    """The authenticated Unix user, with the role their groups give them right now."""
    if authentication.claims is not None:
        return auth.resolve_principal(settings, authentication.claims)
    return api_tokens.resolve_principal(settings, authentication.username)


CurrentUser = Annotated[Principal, Depends(get_current_principal)]


async def get_session_principal(_: TokenClaimsDep, user: CurrentUser) -> Principal:
    """Like ``CurrentUser``, but only through a login session: API tokens get 403."""
    return user


SessionUser = Annotated[Principal, Depends(get_session_principal)]


async def get_admin_principal(user: CurrentUser) -> Principal:
    """Like ``CurrentUser``, but only for members of the admin group."""
    if not user.is_admin:
        raise Forbidden("This needs the administrator role.")
    return user


AdminUser = Annotated[Principal, Depends(get_admin_principal)]


async def get_snapshot(request: Request) -> SnapshotService:
    return services_of(request).snapshot


SnapshotDep = Annotated[SnapshotService, Depends(get_snapshot)]


async def get_adapter(request: Request) -> SlurmAdapter:
    return services_of(request).adapter


AdapterDep = Annotated[SlurmAdapter, Depends(get_adapter)]


async def get_monitoring(request: Request) -> MonitoringService:
    monitoring = services_of(request).monitoring
    if monitoring is None:
        raise NotFound("Monitoring is not set up in this portal process.")
    return monitoring


MonitoringDep = Annotated[MonitoringService, Depends(get_monitoring)]


def strict_query(*allowed: str) -> Any:
    """A dependency that answers 422 for query parameters the endpoint does not know.

    FastAPI ignores unknown parameters; a misspelt filter (``?stat=running``) would
    then silently return everything, which is worse than an error. Every ``/api/``
    route gets this check anyway, from the parameters it declares (``check_request``
    in ``api/params.py``, installed on the app); listing them here as well documents
    them at the route and still works.
    """
    known = frozenset(allowed)

    async def check(request: Request) -> None:
        for name in request.query_params:
            if name not in known:
                hint = f" Known: {', '.join(sorted(known))}." if known else ""
                raise InvalidInput(f"Unknown query parameter {name!r}.{hint}")

    return Depends(check)


async def get_apptainer(request: Request) -> ApptainerCatalog:
    """The process's Apptainer image catalog."""
    return services_of(request).apptainer


ApptainerDep = Annotated[ApptainerCatalog, Depends(get_apptainer)]


async def get_runas(request: Request) -> RunAs:
    return services_of(request).runas


RunAsDep = Annotated[RunAs, Depends(get_runas)]


async def get_submit_context(request: Request) -> SubmitContext:
    """The process's submission context, built once by the app factory."""
    return services_of(request).submit


SubmitContextDep = Annotated[SubmitContext, Depends(get_submit_context)]


async def get_client_address(request: Request) -> str:
    """The peer address. Behind a reverse proxy, run uvicorn with ``--proxy-headers``
    and ``--forwarded-allow-ips`` so this is the real client and not the proxy."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(get_client_address)]


def session_context(connection: HTTPConnection) -> SessionContext:
    """The process's sessions context; also for WebSocket endpoints, which build it
    themselves (they take no ``Request`` dependencies)."""
    return services_of(connection).sessions


async def get_session_context(request: Request) -> SessionContext:
    return session_context(request)


SessionContextDep = Annotated[SessionContext, Depends(get_session_context)]


async def get_proxy_principal(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    cache: ApiTokenCacheDep,
    bearer: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """Who asks through the web-app proxy (``/node/...``).

    The proxied app (Jupyter) posts without the portal's CSRF header, so instead of
    that header an unsafe request must come from the portal's own origin: browsers
    always send ``Origin`` on such requests, and another site's page cannot forge it.
    """
    if bearer and api_tokens.looks_like_api_token(bearer):
        authentication = await get_authentication(request, settings, database, cache, bearer)
        return api_tokens.resolve_principal(settings, authentication.username)
    if not bearer and request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        if not origin_allowed(origin, request.url.scheme, host, tuple(settings.allowed_origins)):
            raise Forbidden("This request did not come from the portal's own pages.")
    claims = await _session_claims(request, settings, database, bearer, csrf=False)
    return auth.resolve_principal(settings, claims)


ProxyUser = Annotated[Principal, Depends(get_proxy_principal)]


async def get_form_principal(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    csrf: Annotated[str, Form()] = "",
) -> Principal:
    """The session cookie's user for a plain HTML form post (the admin pages).

    A form cannot send the CSRF header, so it repeats the CSRF cookie's value in its
    ``csrf`` field instead (as the logout form does); another site cannot read it.
    """
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    if not cookie or not secrets.compare_digest(cookie, csrf):
        raise Forbidden(auth.CSRF_REFUSED)
    claims = await _session_claims(request, settings, database, None, csrf=False)
    return auth.resolve_principal(settings, claims)


FormUser = Annotated[Principal, Depends(get_form_principal)]
