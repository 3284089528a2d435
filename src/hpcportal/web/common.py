"""What every page module shares: the page context, its dependencies, error pages.

``Page`` carries who is asking, in which language and theme, and renders a template
with what every template needs (navigation, CSRF value, versioned asset URLs). A page
without a valid session raises ``LoginRequired`` (redirect to ``/login?next=...``;
htmx requests get ``HX-Redirect``); ``PageError`` is an error page in the person's
language. The page modules (``web/*_pages.py``, ``web/dashboard.py``...) import from
here and from ``services/``, never from the API's routers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.dependencies import (
    ApiTokenCacheDep,
    DatabaseDep,
    SettingsDep,
    get_authentication,
    get_current_principal,
)
from hpcportal.errors import NotAuthenticated, PortalError
from hpcportal.services import auth
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm.states import JobStatus
from hpcportal.web import i18n
from hpcportal.web.i18n import N_

STATIC_DIR: Final = i18n.WEB_DIR / "static"
THEME_COOKIE: Final = "hpcportal_theme"
THEMES: Final = ("auto", "light", "dark")
#: How much of a job's output the detail page shows at first (the live tail follows).
OUTPUT_TAIL_BYTES: Final = 32 * 1024
#: How many jobs a page of the jobs list may show.
PAGE_SIZES: Final = (25, 50, 100, 200)

#: The navigation, in order: path, label, and the page key that marks it current.
NAV: Final = (
    ("/", N_("Dashboard"), "dashboard"),
    ("/jobs", N_("Jobs"), "jobs"),
    ("/submit", N_("Submit"), "submit"),
    ("/apps", N_("Interactive apps"), "apps"),
    ("/sessions", N_("My sessions"), "sessions"),
    ("/files", N_("Files"), "files"),
    ("/templates", N_("Templates"), "templates"),
    ("/nodes", N_("Nodes"), "nodes"),
    ("/partitions", N_("Partitions"), "partitions"),
    ("/accounting", N_("Accounting"), "accounting"),
    ("/reports", N_("Reports"), "reports"),
)
SORTS: Final = (
    ("-submit_time", N_("Newest first")),
    ("submit_time", N_("Oldest first")),
    ("id", N_("Job ID")),
    ("-id", N_("Job ID, descending")),
    ("name", N_("Name")),
    ("state", N_("State")),
    ("partition", N_("Partition")),
    ("-priority", N_("Priority")),
    ("-start_time", N_("Recently started")),
)


# --- Errors that become pages ---------------------------------------------------------


class PageException(Exception):
    """Raised by page handlers; ``handle_page_exception`` turns it into a response."""


class LoginRequired(PageException):
    """No valid session: go to the login page, then come back."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "login required")
        self.reason = reason


class PageError(PageException):
    """A problem shown as an error page (404, 503...), in the person's language."""

    def __init__(self, status: int, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


def safe_next(value: str | None) -> str:
    """A local path to return to after logging in; anything else becomes ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 32 for c in value) or len(value) > 2000:
        return "/"
    return value


def login_url(request: Request, reason: str | None) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    params = {"next": safe_next(here)}
    if reason:
        params["reason"] = reason
    return "/login?" + urlencode(params)


async def handle_page_exception(request: Request, exc: Exception) -> Response:
    """The app's handler for ``PageException`` (registered in ``app.create_app``)."""
    if isinstance(exc, LoginRequired):
        target = login_url(request, exc.reason)
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    assert isinstance(exc, PageError)
    page = basic_page(request, services_of(request).settings, None)
    title = exc.title or page.gettext(N_("Something went wrong"))
    return page.render("error.html", status=exc.status, title=title, message=exc.message)


def page_error(exc: PortalError) -> PageError:
    """A service's refusal (404, 403, 503...) as an error page with its message."""
    return PageError(exc.status, exc.message)


# --- The page context -------------------------------------------------------------------


@lru_cache(maxsize=256)
def _asset_version(path: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``, so a changed file is never served stale."""
    return f"/static/{quote(path)}?v={_asset_version(path)}"


@lru_cache(maxsize=1)
def import_map() -> dict[str, dict[str, str]]:
    """Every script module at its versioned URL, so relative imports between modules
    resolve to the same (cache-busted) URL as the page's ``<script>`` tags."""
    modules = sorted(p.name for p in (STATIC_DIR / "js").glob("*.js"))
    return {"imports": {f"/static/js/{name}": static_url(f"js/{name}") for name in modules}}


@dataclass
class Page:
    """Everything a template needs about the request: who, which language, which theme."""

    request: Request
    settings: Settings
    user: Principal | None
    lang: str
    fmt: i18n.Formatter
    theme: str
    stale: SnapshotMeta | None = None
    #: The snapshot generation the page was drawn from: the live socket resumes from it,
    #: so a refresh between drawing the page and subscribing is not missed.
    generation: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def gettext(self, message: str) -> str:
        return i18n.gettext(self.lang, message)

    def job_label(self, status: str | JobStatus) -> str:
        value = str(getattr(status, "value", status))
        return self.gettext(i18n.JOB_STATUS_LABELS.get(value, value))

    def node_label(self, status: str) -> str:
        value = str(getattr(status, "value", status))
        return self.gettext(i18n.NODE_STATUS_LABELS.get(value, value))

    def url_with(self, **changes: Any) -> str:
        """This page's URL with some query parameters changed (``None`` removes one)."""
        params: dict[str, list[str]] = {}
        for key, value in self.request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        for key, value in changes.items():
            if value is None or value == "" or value == []:
                params.pop(key, None)
            elif isinstance(value, list | tuple):
                params[key] = [str(v) for v in value]
            else:
                params[key] = [str(value)]
        query = urlencode([(k, v) for k, vs in params.items() for v in vs])
        return self.request.url.path + (f"?{query}" if query else "")

    def render(self, template_name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        env = i18n.environment(self.lang)
        csrf = self.request.cookies.get(auth.CSRF_COOKIE, "")
        html = env.get_template(template_name).render(
            page=self,
            user=self.user,
            lang=self.lang,
            fmt=self.fmt,
            theme=self.theme,
            csrf=csrf,
            nav=NAV,
            languages=i18n.LANGUAGE_NAMES,
            js_catalog=i18n.js_catalog(self.lang),
            static=static_url,
            import_map=import_map(),
            job_label=self.job_label,
            node_label=self.node_label,
            widget_titles=i18n.WIDGET_TITLES,
            current_path=self.request.url.path,
            **context,
        )
        headers = {"Cache-Control": "no-store", "Content-Language": self.lang}
        headers.update(self.extra_headers)
        return HTMLResponse(html, status_code=status, headers=headers)


def basic_page(request: Request, settings: Settings, user: Principal | None) -> Page:
    """The page context for this request: language and theme from cookies/headers."""
    cookies = request.cookies
    lang = i18n.negotiate(cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))
    theme = cookies.get(THEME_COOKIE, "auto")
    return Page(
        request=request,
        settings=settings,
        user=user,
        lang=lang,
        fmt=i18n.Formatter(lang, i18n.timezone_from(cookies.get(i18n.TZ_COOKIE))),
        theme=theme if theme in THEMES else "auto",
    )


async def get_page_user(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    cache: ApiTokenCacheDep,
) -> Principal:
    """The session cookie's user, through the API's own checks; else ``LoginRequired``."""
    if not request.cookies.get(settings.cookie_name):
        raise LoginRequired("required" if request.url.path != "/" else None)
    try:
        authentication = await get_authentication(request, settings, database, cache, None)
        return await get_current_principal(authentication, settings)
    except NotAuthenticated as exc:
        reason = "refused" if exc.message == auth.ACCOUNT_REFUSED else "expired"
        raise LoginRequired(reason) from None


PageUser = Annotated[Principal, Depends(get_page_user)]


async def get_page(request: Request, settings: SettingsDep, user: PageUser) -> Page:
    return basic_page(request, settings, user)


async def get_public_page(request: Request, settings: SettingsDep) -> Page:
    return basic_page(request, settings, None)


PageDep = Annotated[Page, Depends(get_page)]
PublicPageDep = Annotated[Page, Depends(get_public_page)]


async def current_snapshot(page: Page, snapshot: SnapshotService) -> ClusterSnapshot:
    """The current snapshot, or an error page when there has never been one."""
    try:
        snap = await snapshot.current()
    except PortalError as exc:
        raise PageError(
            exc.status, exc.message, title=page.gettext(N_("No cluster data"))
        ) from None
    meta = SnapshotMeta.of(snapshot.health())
    if meta.stale:
        page.stale = meta
    page.generation = snap.generation
    return snap


T = TypeVar("T")


def in_session(database: Database, work: Callable[[Any], T]) -> T:
    """``work`` in a database session of its own (call from a worker thread)."""
    with database.session() as session:
        return work(session)
