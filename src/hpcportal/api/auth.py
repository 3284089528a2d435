"""``/auth``: log in (token + browser session cookies) and log out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from hpcportal.dependencies import DbDep, SettingsDep, TokenClaimsDep
from hpcportal.services import browser_session
from hpcportal.services.identity import Role

router = APIRouter(prefix="/auth", tags=["auth"])


class TokenResponse(BaseModel):
    """OAuth2-style token answer, plus who logged in, for the page header."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (not a secret)
    expires_in: int
    user: str
    role: Role


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
    principal, issued = browser_session.log_in(
        db, settings, form.username, form.password, request, response
    )
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
    browser_session.log_out(db, settings, claims, request, response)
