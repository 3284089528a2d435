"""A browser's login session: the session and CSRF cookies around a token.

Both ways in share it: the API's ``/auth/token`` and ``/auth/logout`` and the login
page's form (``web/auth_pages.py``), so a person logged in either way holds the same
cookies, and logging out either way revokes the token and closes its live sockets.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.services import audit, auth
from hpcportal.services.identity import Principal


def client_address(request: Request) -> str:
    """The peer address. Behind a reverse proxy, run uvicorn with ``--proxy-headers``
    and ``--forwarded-allow-ips`` so this is the real client and not the proxy."""
    return request.client.host if request.client else "unknown"


def _set_cookie(
    response: Response, settings: Settings, name: str, value: str, *, httponly: bool, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.cookie_secure,
        httponly=httponly,
        samesite="lax",
    )


def set_session_cookies(response: Response, settings: Settings, issued: auth.IssuedToken) -> None:
    """The token's cookie, and a fresh CSRF cookie the page echoes in a header."""
    # The session cookie is httpOnly (scripts cannot steal it); the CSRF cookie is not,
    # because the page must read it to echo it in the X-CSRF-Token header.
    ttl = issued.expires_in
    _set_cookie(response, settings, settings.cookie_name, issued.token, httponly=True, max_age=ttl)
    _set_cookie(
        response, settings, auth.CSRF_COOKIE, auth.new_csrf_token(), httponly=False, max_age=ttl
    )


def clear_session_cookies(response: Response, settings: Settings) -> None:
    """Drop both cookies (logging out, or a session cookie that no longer decodes)."""
    for name, httponly in ((settings.cookie_name, True), (auth.CSRF_COOKIE, False)):
        response.delete_cookie(
            name, path="/", secure=settings.cookie_secure, httponly=httponly, samesite="lax"
        )


def log_in(
    db: Session,
    settings: Settings,
    username: str,
    password: str,
    request: Request,
    response: Response,
) -> tuple[Principal, auth.IssuedToken]:
    """Check the Unix password (PAM, throttled) and put the new token in cookies.

    Blocks for seconds on a wrong password: call it from a worker thread.
    """
    address = client_address(request)
    principal = auth.login(db, settings, username, password, address)
    # The user-activity report counts logins from the audit log; the request's
    # transaction commits the entry with the answer.
    audit.add(db, audit.Event.of(principal, "auth.login", None, address))
    issued = auth.issue_token(settings, principal)
    set_session_cookies(response, settings, issued)
    response.headers["Cache-Control"] = "no-store"
    return principal, issued


def log_out(
    db: Session,
    settings: Settings,
    claims: auth.TokenClaims,
    request: Request,
    response: Response,
) -> None:
    """Revoke the token everywhere (all replicas), close its live sockets, drop the
    cookies."""
    auth.revoke_token(db, claims)
    services = services_of(request)
    services.revocations.add(claims.jti, claims.expires_at)
    services.live.session_ended(claims.jti)
    clear_session_cookies(response, settings)
