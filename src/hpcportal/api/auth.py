"""``/auth``: log in (token + browser session cookies) and log out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from hpcportal.api.deps import DbDep, SettingsDep, TokenClaimsDep
from hpcportal.config import Settings
from hpcportal.services import auth
from hpcportal.services.identity import Role

router = APIRouter(prefix="/auth", tags=["auth"])


class TokenResponse(BaseModel):
    """OAuth2-style token answer, plus who logged in, for the page header."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (not a secret)
    expires_in: int
    user: str
    role: Role


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


def _set_session_cookies(response: Response, settings: Settings, issued: auth.IssuedToken) -> None:
    # The session cookie is httpOnly (scripts cannot steal it); the CSRF cookie is not,
    # because the page must read it to echo it in the X-CSRF-Token header.
    ttl = issued.expires_in
    _set_cookie(response, settings, settings.cookie_name, issued.token, httponly=True, max_age=ttl)
    _set_cookie(
        response, settings, auth.CSRF_COOKIE, auth.new_csrf_token(), httponly=False, max_age=ttl
    )


def _clear_session_cookies(response: Response, settings: Settings) -> None:
    for name, httponly in ((settings.cookie_name, True), (auth.CSRF_COOKIE, False)):
        response.delete_cookie(
            name, path="/", secure=settings.cookie_secure, httponly=httponly, samesite="lax"
        )


@router.post("/token", response_model=TokenResponse)
def log_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    settings: SettingsDep,
    db: DbDep,
) -> TokenResponse:
    """Check the Unix password (PAM) and open a session.

    A plain ``def``: FastAPI runs it in a worker thread, so PAM's blocking (seconds on
    a wrong password) does not stall other requests.
    """
    principal = auth.login(db, settings, form.username, form.password, client_address(request))
    issued = auth.issue_token(settings, principal)
    _set_session_cookies(response, settings, issued)
    response.headers["Cache-Control"] = "no-store"
    return TokenResponse(
        access_token=issued.token,
        expires_in=issued.expires_in,
        user=principal.username,
        role=principal.role,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def log_out(
    request: Request,
    claims: TokenClaimsDep,
    response: Response,
    settings: SettingsDep,
    db: DbDep,
) -> None:
    """Revoke this token everywhere (all replicas) and drop the browser's cookies."""
    auth.revoke_token(db, claims)
    request.app.state.revocations.add(claims.jti, claims.expires_at)
    request.app.state.live.session_ended(claims.jti)  # close this session's live sockets
    _clear_session_cookies(response, settings)
