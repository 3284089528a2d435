"""The login page, logging out, and the language switch.

Logging in and out go through ``services.browser_session``, the same calls the API's
``/auth`` routes make: the same PAM check and throttling, the same cookies.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hpcportal.dependencies import DatabaseDep, SettingsDep
from hpcportal.errors import InvalidInput, NotAuthenticated, PortalError, RateLimited
from hpcportal.services import auth, browser_session
from hpcportal.web import i18n
from hpcportal.web.common import PageError, PublicPageDep, basic_page, safe_next
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

LOGIN_REASONS: Final = {
    "expired": N_("Your session has expired; log in again."),
    "required": N_("Log in to see that page."),
    "logged_out": N_("You have logged out."),
    "refused": N_("This account may no longer use the portal."),
}


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    page: PublicPageDep,
    next: str | None = None,
    reason: str | None = None,
) -> HTMLResponse:
    message = LOGIN_REASONS.get(reason or "")
    return page.render(
        "login.html",
        next_url=safe_next(next),
        message=page.gettext(message) if message else None,
        message_kind="error" if reason in ("expired", "refused") else "info",
        username="",
    )


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Log in as the API does (``services.browser_session``: PAM, throttling,
    cookies), then go on.

    A plain ``def``: PAM blocks for seconds on a wrong password.
    """
    page = basic_page(request, settings, None)
    target = safe_next(next)
    response = RedirectResponse(target, status_code=303)
    try:
        with database.session() as db:
            browser_session.log_in(db, settings, username.strip(), password, request, response)
    except PortalError as exc:
        if isinstance(exc, RateLimited):
            wait = (exc.headers or {}).get("Retry-After", "60")
            message = page.gettext(
                N_("Too many failed logins. Try again in %(seconds)s seconds.")
            ) % {"seconds": wait}
            status = 429
        elif isinstance(exc, NotAuthenticated) and exc.message == auth.ACCOUNT_REFUSED:
            # Said only after PAM accepted the password (services.auth.login).
            message, status = page.gettext(LOGIN_REASONS["refused"]), 401
        elif isinstance(exc, NotAuthenticated | InvalidInput):
            message, status = page.gettext(N_("Wrong username or password.")), 401
        else:
            message, status = exc.message, exc.status
        return page.render(
            "login.html",
            status=status,
            next_url=target,
            message=message,
            message_kind="error",
            username=username,
        )
    return response


@router.post("/logout")
def logout_submit(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Revoke the session as the API's logout does, and go to the login page.

    The form repeats the CSRF cookie's value, as the API's header would.
    """
    response = RedirectResponse("/login?reason=logged_out", status_code=303)
    token = request.cookies.get(settings.cookie_name)
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    if not token:
        return response
    if not cookie or not secrets.compare_digest(cookie, csrf):
        raise PageError(403, auth.CSRF_REFUSED)
    try:
        claims = auth.decode_token(settings, token)
    except NotAuthenticated:
        claims = None
    with database.session() as db:
        if claims is not None:
            browser_session.log_out(db, settings, claims, request, response)
        else:
            browser_session.clear_session_cookies(response, settings)
    return response


@router.post("/lang")
async def switch_language(
    request: Request,
    settings: SettingsDep,
    lang: Annotated[str, Form()] = i18n.DEFAULT_LANGUAGE,
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Remember the chosen language in a cookie (a year) and go back."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie(
            i18n.LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            path="/",
            samesite="lax",
            secure=settings.cookie_secure,
        )
    return response
