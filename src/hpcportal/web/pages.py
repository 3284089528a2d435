"""Server-rendered pages of the portal, mounted at ``/`` by the app factory.

Each handler reads from the same services the JSON API uses (the snapshot, jobs,
accounting, templates, dashboards) and renders a Jinja2 template in the request's
language. Scripts on the pages act through the JSON API (with the CSRF header) and
follow live updates over the WebSocket (``static/js/live.js``).

A page without a valid session redirects to ``/login?next=...`` (htmx requests get
``HX-Redirect``); errors a person can act on render an error page in their language.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import select

from hpcportal.api import auth as auth_api
from hpcportal.api.deps import (
    AdapterDep,
    ApiTokenCacheDep,
    ApptainerDep,
    DatabaseDep,
    SessionContextDep,
    SettingsDep,
    SnapshotDep,
    get_authentication,
    get_current_principal,
)
from hpcportal.api.params import DbId
from hpcportal.config import Settings
from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import (
    InvalidInput,
    NotAuthenticated,
    PortalError,
    RateLimited,
)
from hpcportal.services import auth, share_links
from hpcportal.services import dashboards as dashboard_service
from hpcportal.services import jobs as job_service
from hpcportal.services import sessions as session_service
from hpcportal.services import templates as template_service
from hpcportal.services.cluster import SnapshotMeta, partition_loads, summarize
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import AccountingQuery, JobDetail, JobQuery
from hpcportal.services.sessions import SessionContext, SessionView
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.services.submit_choices import submit_choices
from hpcportal.services.template_render import INT_OPTIONS, STR_OPTIONS
from hpcportal.services.visibility import for_snapshot, visible_jobs
from hpcportal.slurm import hostlist
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus
from hpcportal.web import i18n
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

STATIC_DIR: Final = i18n.WEB_DIR / "static"
THEME_COOKIE: Final = "hpcportal_theme"
THEMES: Final = ("auto", "light", "dark")
#: How much of a job's output the detail page shows at first (the live tail follows).
OUTPUT_TAIL_BYTES: Final = 32 * 1024
#: Accounting charts read at most this many records (pages of 1000).
ACCOUNTING_MAX_RECORDS: Final = 20_000
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
)
LOGIN_REASONS: Final = {
    "expired": N_("Your session has expired; log in again."),
    "required": N_("Log in to see that page."),
    "logged_out": N_("You have logged out."),
    "refused": N_("This account may no longer use the portal."),
}
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
    page = _basic_page(request, request.app.state.settings, None)
    title = exc.title or page.gettext(N_("Something went wrong"))
    return page.render("error.html", status=exc.status, title=title, message=exc.message)


def _page_error(exc: PortalError) -> PageError:
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


def _basic_page(request: Request, settings: Settings, user: Principal | None) -> Page:
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
    return _basic_page(request, settings, user)


async def get_public_page(request: Request, settings: SettingsDep) -> Page:
    return _basic_page(request, settings, None)


PageDep = Annotated[Page, Depends(get_page)]
PublicPageDep = Annotated[Page, Depends(get_public_page)]


async def _snapshot(page: Page, snapshot: SnapshotService) -> ClusterSnapshot:
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
    return snap


T = TypeVar("T")


def _in_session(database: Database, work: Callable[[Any], T]) -> T:
    with database.session() as session:
        return work(session)


# --- Login, logout, language -------------------------------------------------------------


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
    """Log in through the API's own handler (PAM, throttling, cookies), then go on.

    A plain ``def``: PAM blocks for seconds on a wrong password.
    """
    page = _basic_page(request, settings, None)
    target = safe_next(next)
    response = RedirectResponse(target, status_code=303)
    form = OAuth2PasswordRequestForm(username=username.strip(), password=password)
    try:
        with database.session() as db:
            auth_api.log_in(form, request, response, settings, db)
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
    """Revoke the session (the API's logout) and go to the login page.

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
            auth_api.log_out(request, claims, response, settings, db)
        else:
            auth_api._clear_session_cookies(response, settings)
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


# --- Dashboard ---------------------------------------------------------------------------


def _my_jobs(snap: ClusterSnapshot, who: Principal, meta: SnapshotMeta, limit: int) -> Any:
    query = JobQuery(user=[who.username], sort="-submit_time", limit=limit, arrays="collapsed")
    return job_service.list_jobs(snap, query, who, meta)


def _widget_data(page: Page, snap: ClusterSnapshot, snapshot: SnapshotService) -> dict[str, Any]:
    assert page.user is not None
    health = snapshot.health()
    meta = SnapshotMeta.of(health)
    vis = for_snapshot(page.user, snap)
    return {
        "summary": summarize(snap, health, vis),
        "my_jobs": _my_jobs(snap, page.user, meta, 10),
        "nodes": [] if vis.hides("nodes") else sorted(snap.nodes, key=lambda n: n.name),
        "partitions": [p for p in snap.partitions if not p.hidden and not vis.hides("partitions")],
    }


@router.get("/", response_class=HTMLResponse)
async def dashboard(page: PageDep, snapshot: SnapshotDep, database: DatabaseDep) -> HTMLResponse:
    assert page.user is not None
    who = page.user
    snap = await _snapshot(page, snapshot)
    layout = await run_in_threadpool(
        _in_session, database, lambda s: dashboard_service.get_layout(s, who)
    )
    present = {w.type for w in layout.widgets}
    return page.render(
        "dashboard.html",
        page_key="dashboard",
        layout=layout,
        missing=[t for t in dashboard_service.WIDGET_TYPES if t not in present],
        presets=dashboard_service.presets(),
        preset_titles=i18n.PRESET_TITLES,
        data=_widget_data(page, snap, snapshot),
    )


@router.get("/partials/widgets/{kind}", response_class=HTMLResponse)
async def widget_partial(kind: str, page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    """One widget's content, for a widget just added to the dashboard (htmx)."""
    if kind not in dashboard_service.WIDGET_TYPES:
        raise PageError(404, page.gettext(N_("No such widget.")))
    snap = await _snapshot(page, snapshot)
    return page.render("widget.html", kind=kind, data=_widget_data(page, snap, snapshot))


# --- Nodes and partitions -------------------------------------------------------------------


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(
    page: PageDep, snapshot: SnapshotDep, partition: str | None = None
) -> HTMLResponse:
    return await _nodes(page, snapshot, partition, None)


@router.get("/nodes/{name}", response_class=HTMLResponse)
async def node_page(
    name: str, page: PageDep, snapshot: SnapshotDep, partition: str | None = None
) -> HTMLResponse:
    return await _nodes(page, snapshot, partition, name)


async def _nodes(
    page: Page, snapshot: SnapshotService, partition: str | None, selected: str | None
) -> HTMLResponse:
    snap = await _snapshot(page, snapshot)
    assert page.user is not None
    vis = for_snapshot(page.user, snap)
    try:
        vis.require("nodes")
    except PortalError as exc:
        raise _page_error(exc) from None
    nodes = sorted(snap.nodes, key=lambda n: n.name)
    if partition:
        nodes = [n for n in nodes if partition in n.partitions]
    node = None
    if selected is not None:
        node = snap.nodes_by_name.get(selected)
        if node is None:
            raise PageError(404, page.gettext(N_("No node named %(name)s.")) % {"name": selected})
    counts = Counter(n.status.value for n in nodes)
    return page.render(
        "nodes.html",
        page_key="nodes",
        nodes=nodes,
        counts=sorted(counts.items()),
        partitions=[] if vis.hides("partitions") else [p.name for p in snap.partitions],
        partition=partition,
        node=node,
        node_jobs=_jobs_on(snap, node.name, page) if node else [],
    )


def expand_hostlist(spec: str) -> list[str]:
    """Slurm's compact host lists: ``node[001-003,007],gpu001`` -> every name.

    Expanded by the Slurm boundary (ClusterShell); models already carry
    ``node_names``, so pages rarely need this.
    """
    return hostlist.expand(spec)


def _jobs_on(snap: ClusterSnapshot, node_name: str, page: Page) -> list[Job]:
    """Running jobs with a share of this node, of those the user sees."""
    assert page.user is not None
    vis = for_snapshot(page.user, snap)

    def compute() -> dict[str, list[Job]]:
        by_node: dict[str, list[Job]] = defaultdict(list)
        for job in snap.jobs:
            if job.status is JobStatus.RUNNING:
                for name in job.node_names:
                    by_node[name].append(job)
        return by_node

    by_node: dict[str, list[Job]] = snap.memo("web:jobs_by_node", compute)
    jobs = visible_jobs(snap, vis, by_node.get(node_name, []))
    return [job_service.visible(j, page.user, snap) for j in jobs[:50]]


@router.get("/partials/nodes/{name}", response_class=HTMLResponse)
async def node_partial(name: str, page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    snap = await _snapshot(page, snapshot)
    assert page.user is not None
    try:
        for_snapshot(page.user, snap).require("nodes")
    except PortalError as exc:
        raise _page_error(exc) from None
    node = snap.nodes_by_name.get(name)
    if node is None:
        raise PageError(404, page.gettext(N_("No node named %(name)s.")) % {"name": name})
    return page.render("node_detail.html", node=node, node_jobs=_jobs_on(snap, name, page))


@router.get("/partitions", response_class=HTMLResponse)
async def partitions_page(page: PageDep, snapshot: SnapshotDep) -> HTMLResponse:
    snap = await _snapshot(page, snapshot)
    assert page.user is not None
    vis = for_snapshot(page.user, snap)
    try:
        vis.require("partitions")
    except PortalError as exc:
        raise _page_error(exc) from None
    return page.render("partitions.html", page_key="partitions", loads=partition_loads(snap, vis))


# --- Jobs ---------------------------------------------------------------------------------


def _csv(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


# ``/jobs`` and ``/jobs/{id}`` are in ``web/job_pages.py``.


def _may_act(job: Job | AccountingRecord, who: Principal) -> bool:
    return who.is_admin or job.user == who.username


# --- Submitting -----------------------------------------------------------------------------


def _minutes_to_time(minutes: int | None) -> str:
    if minutes is None:
        return ""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def _prefill_from(detail: JobDetail) -> dict[str, Any]:
    """The submit form's fields from an earlier job ("resubmit with changes")."""
    values: dict[str, Any] = {}
    if detail.job is not None:
        j = detail.job
        values.update(
            name=j.name,
            partition=j.partition,
            account=j.account,
            qos=j.qos,
            nodes=j.node_count or None,
            ntasks=j.tasks or None,
            cpus_per_task=(j.cpus // j.tasks) if j.tasks and j.cpus >= j.tasks else None,
            memory=f"{j.memory_mb}M" if j.memory_mb else None,
            gpus=j.gpus or None,
            time_limit=_minutes_to_time(j.time_limit_minutes),
        )
        if j.private is not None:
            values.update(work_dir=j.private.work_dir, output=j.private.stdout)
            if j.private.stderr and j.private.stderr != j.private.stdout:
                values["error"] = j.private.stderr
    elif detail.accounting is not None:
        r = detail.accounting
        values.update(
            name=r.name,
            partition=r.partition,
            account=r.account,
            qos=r.qos,
            nodes=r.node_count or None,
            memory=f"{r.memory_requested_mb}M" if r.memory_requested_mb else None,
            time_limit=_minutes_to_time(r.time_limit_minutes),
            work_dir=r.work_dir,
        )
    if detail.script:
        values["script"] = detail.script
    return {k: v for k, v in values.items() if v not in (None, "")}


DEFAULT_SCRIPT: Final = '#!/bin/bash\n\necho "Hello from $(hostname)"\n'


@router.get("/submit", response_class=HTMLResponse)
async def submit_page(
    page: PageDep,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    database: DatabaseDep,
    catalog: ApptainerDep,
    from_job: Annotated[str | None, Query(alias="from")] = None,
    template: DbId | None = None,
) -> HTMLResponse:
    """The submission form: partition-aware limits, templates, files, image, preview."""
    who = page.user
    assert who is not None
    snap = await _snapshot(page, snapshot)
    meta = SnapshotMeta.of(snapshot.health())
    prefill: dict[str, Any] = {}
    notice = None
    if from_job:
        try:
            job_service.validate_job_id(from_job)
            detail = await run_in_threadpool(
                job_service.find_job, snap, adapter, from_job, who, meta, with_script=True
            )
            record = detail.job or detail.accounting
            if record is not None and _may_act(record, who):
                prefill = _prefill_from(detail)
                notice = page.gettext(N_("Copied from job %(id)s: change what you need.")) % {
                    "id": from_job
                }
        except PortalError as exc:
            notice = exc.message
    templates = await run_in_threadpool(
        _in_session, database, lambda s: template_service.list_templates(s, who)
    )
    try:
        if catalog.needs_scan():
            await run_in_threadpool(catalog.refresh)
        images = catalog.images()
    except PortalError:
        images = []
    choices = await run_in_threadpool(submit_choices, adapter, who)
    partitions = [
        {
            "name": load.partition.name,
            "is_default": load.partition.is_default,
            "state": load.partition.state,
            "max_time_minutes": load.partition.max_time_minutes,
            "default_time_minutes": load.partition.default_time_minutes,
            "max_nodes": load.partition.max_nodes,
            "total_nodes": load.partition.total_nodes,
            "total_cpus": load.partition.total_cpus,
            "gpus_total": load.gpus.total,
            "max_mem_per_node_mb": load.partition.max_mem_per_node_mb,
            "default_mem_per_cpu_mb": load.partition.default_mem_per_cpu_mb,
            "max_time_text": _minutes_to_time(load.partition.max_time_minutes),
            "default_time_text": _minutes_to_time(load.partition.default_time_minutes),
        }
        for load in partition_loads(snap, for_snapshot(who, snap))
        if not load.partition.hidden
    ]
    if "partition" not in prefill:
        default = next((p for p in partitions if p["is_default"]), None)
        if default is not None:
            prefill["partition"] = default["name"]
    return page.render(
        "submit.html",
        page_key="submit",
        prefill=prefill,
        script=prefill.get("script", DEFAULT_SCRIPT),
        notice=notice,
        partitions=partitions,
        templates=[t.model_dump(mode="json") for t in templates.items],
        selected_template=template,
        images=[
            {
                "id": i.id,
                "name": i.name,
                "category": i.category,
                "software": i.metadata.name,
                "version": i.metadata.version,
                "gpu": i.metadata.gpu,
                "description": i.metadata.description,
            }
            for i in images
        ],
        choices=choices,
        idempotency_key=str(uuid.uuid4()),
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        mail_types=["BEGIN", "END", "FAIL", "ALL"],
    )


# --- Templates -----------------------------------------------------------------------------


@router.get("/templates", response_class=HTMLResponse)
async def templates_page(
    page: PageDep, database: DatabaseDep, category: str | None = None
) -> HTMLResponse:
    who = page.user
    assert who is not None
    listing = await run_in_threadpool(
        _in_session, database, lambda s: template_service.list_templates(s, who)
    )
    groups: dict[str, list[Any]] = defaultdict(list)
    for item in listing.items:
        if not category or item.category.lower() == category.lower():
            groups[item.category].append(item)
    return page.render(
        "templates.html",
        page_key="templates",
        groups=sorted(groups.items(), key=lambda kv: kv[0].lower()),
        categories=sorted({t.category for t in listing.items}, key=str.lower),
        category=category or "",
    )


def _may_edit(template: template_service.TemplateOut, who: Principal) -> bool:
    return template.scope == "personal" or who.is_admin


@router.get("/templates/new", response_class=HTMLResponse)
async def template_new(page: PageDep, database: DatabaseDep) -> HTMLResponse:
    who = page.user
    assert who is not None
    categories = await run_in_threadpool(
        _in_session, database, lambda s: template_service.categories(s, who)
    )
    blank: dict[str, Any] = {
        "id": None,
        "name": "",
        "description": "",
        "category": "",
        "scope": "personal",
        "script": "#!/bin/bash\n\necho {{ message }}\n",
        "options": {},
        "parameters": [
            {"name": "message", "type": "string", "label": "Message", "default": "hello"}
        ],
    }
    return page.render(
        "template_edit.html",
        page_key="templates",
        template=blank,
        history=[],
        may_edit=True,
        categories=categories,
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        option_fields=_option_fields(),
    )


@router.get("/templates/{template_id}", response_class=HTMLResponse)
async def template_page(
    template_id: str,
    page: PageDep,
    database: DatabaseDep,
) -> HTMLResponse:
    who = page.user
    assert who is not None
    if not template_id.isdigit() or not 1 <= int(template_id) < 2**31:
        raise PageError(404, page.gettext(N_("No such template.")))
    number = int(template_id)

    def load(session: Any) -> tuple[Any, Any, list[str]]:
        return (
            template_service.get_template(session, number, who),
            template_service.history(session, number, who),
            template_service.categories(session, who),
        )

    try:
        found, history, categories = await run_in_threadpool(_in_session, database, load)
    except PortalError as exc:
        raise _page_error(exc) from None
    return page.render(
        "template_edit.html",
        page_key="templates",
        template=found.model_dump(mode="json"),
        template_model=found,
        history=history,
        may_edit=_may_edit(found, who),
        categories=categories,
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        option_fields=_option_fields(),
    )


def _option_fields() -> list[str]:
    return sorted(INT_OPTIONS | STR_OPTIONS)


# --- Accounting ------------------------------------------------------------------------------

CHART_STATUSES: Final = ("completed", "failed", "cancelled", "timeout", "running", "other")


def _day_range(start: date, end: date) -> list[date]:
    days = (end - start).days
    return [start + timedelta(days=i) for i in range(max(0, days) + 1)]


def accounting_series(
    records: list[AccountingRecord], start: date, end: date, tz: Any
) -> dict[str, Any]:
    """Per day (in the viewer's time zone): jobs by final state, and CPU-hours allocated.

    A job counts on the day it ended (running ones on the day they started, queued
    ones on the day they were submitted); CPU-hours are allocated CPUs x elapsed time.
    """
    days = _day_range(start, end)
    index = {d: i for i, d in enumerate(days)}
    jobs = {s: [0] * len(days) for s in CHART_STATUSES}
    cpu_hours = [0.0] * len(days)
    for r in records:
        when = r.end_time or r.start_time or r.submit_time
        if when is None:
            continue
        i = index.get(when.astimezone(tz).date())
        if i is None:
            continue
        status = r.status.value if r.status.value in CHART_STATUSES else "other"
        jobs[status][i] += 1
        cpus = r.tres_allocated.get("cpu") or r.cpus_requested or 0
        cpu_hours[i] += cpus * r.elapsed_seconds / 3600
    return {
        "days": [d.isoformat() for d in days],
        "jobs": jobs,
        "cpu_hours": [round(v, 3) for v in cpu_hours],
    }


def _all_accounting(adapter: Any, query: AccountingQuery, who: Principal) -> tuple[Any, list[Any]]:
    first = job_service.list_accounting(adapter, query, who)
    records = list(first.items)
    page_no = 1
    while len(records) < min(first.total, ACCOUNTING_MAX_RECORDS):
        page_no += 1
        more = job_service.list_accounting(adapter, query.model_copy(update={"page": page_no}), who)
        if not more.items:
            break
        records.extend(more.items)
    return first, records


@router.get("/accounting", response_class=HTMLResponse)
async def accounting_page(
    page: PageDep,
    adapter: AdapterDep,
    start: str | None = None,
    end: str | None = None,
    scope: Literal["mine", "all"] = "mine",
    user: str | None = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Usage over a date range: charts per day and the jobs, yours or (admins) anyone's."""
    who = page.user
    assert who is not None
    if not who.is_admin:
        scope = "mine"
    tz = page.fmt.tz
    today = datetime.now(tz).date()
    error = None
    try:
        end_day = date.fromisoformat(end) if end else today
        start_day = date.fromisoformat(start) if start else end_day - timedelta(days=6)
    except (ValueError, OverflowError):  # not a date, or 0001-01-01 minus 6 days
        error = page.gettext(N_("Give dates as YYYY-MM-DD."))
        end_day, start_day = today, today - timedelta(days=6)
    if start_day > end_day:
        error = page.gettext(N_("The start date must not be after the end date."))
        start_day = end_day
    if (end_day - start_day).days >= job_service.MAX_ACCOUNTING_DAYS:
        error = page.gettext(N_("Choose at most %(days)s days.")) % {
            "days": job_service.MAX_ACCOUNTING_DAYS
        }
        start_day = end_day - timedelta(days=job_service.MAX_ACCOUNTING_DAYS - 1)
    users = [who.username] if scope == "mine" else ([user] if user else [])
    query = AccountingQuery(
        start=datetime.combine(start_day, time.min, tzinfo=tz),
        end=datetime.combine(end_day, time.max, tzinfo=tz),
        user=users,
        page=1,
        limit=1000,
    )
    try:
        first, records = await run_in_threadpool(_all_accounting, adapter, query, who)
    except PortalError as exc:
        raise _page_error(exc) from None
    per_page = 50
    shown = records[(page_no - 1) * per_page : page_no * per_page]
    totals = Counter(r.status.value for r in records)
    cpu_hours = sum(
        (r.tres_allocated.get("cpu") or r.cpus_requested or 0) * r.elapsed_seconds / 3600
        for r in records
    )
    return page.render(
        "accounting.html",
        page_key="accounting",
        start=start_day.isoformat(),
        end=end_day.isoformat(),
        scope=scope,
        user_filter=user or "",
        error=error,
        total=first.total,
        truncated=first.total > len(records),
        records=shown,
        pages=max(1, -(-len(records) // per_page)),
        page_no=page_no,
        totals=sorted(totals.items()),
        cpu_hours=cpu_hours,
        series=accounting_series(records, start_day, end_day, tz),
        chart_statuses=CHART_STATUSES,
        chart_labels={
            s: page.job_label(s) if s != "other" else page.gettext(N_("Other"))
            for s in CHART_STATUSES
        },
    )


# The file manager (``/files``) is in ``web/file_pages.py``.


# --- Interactive apps and sessions -------------------------------------------------------------

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
    return _page_error(exc)


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
    snap = await _snapshot(page, snapshot)
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


@dataclass(frozen=True)
class SharedSession:
    """What a share link's page shows: never the session's id, job or secrets."""

    app_name: str
    owner: str
    state: str
    ready: bool


def shared_session(database: Database, digest: str | None) -> SharedSession | None:
    """The session of the view-only link whose token hashes to ``digest`` (what the
    share cookie names), or None when there is none (any more)."""
    if digest is None:
        return None
    with database.session() as db:
        row = db.scalars(
            select(InteractiveSession).where(InteractiveSession.share_token_hash == digest)
        ).first()
        if row is None:
            return None
        view = session_service.view(row)
        return SharedSession(row.app_name, row.username, view.state, view.ready)


def _share_status(shared: SharedSession | None) -> str:
    if shared is None or shared.state not in session_service.ACTIVE:
        return "gone"
    return "ready" if shared.ready else "waiting"


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
    page = _basic_page(request, settings, await get_page_user(request, settings, database, cache))
    sid = key if share_links.SHARE_ID.fullmatch(key) else ""
    shared = await run_in_threadpool(
        shared_session, database, _share_digest(request, settings, sid)
    )
    return page.render(
        "share.html",
        page_key="",
        shared=shared,
        share_status=_share_status(shared),
        share_id=sid,
        app_text=lambda text: _app_text(page, text),
    )


@router.get("/shares/{sid}/status")
async def share_status(
    sid: str, request: Request, page: PageDep, settings: SettingsDep, database: DatabaseDep
) -> Response:
    """``{"status": "ready" | "waiting" | "gone"}``: whether the share still opens."""
    del page  # logged-in people only, like the page itself
    shared = await run_in_threadpool(
        shared_session, database, _share_digest(request, settings, sid)
    )
    return JSONResponse({"status": _share_status(shared)}, headers={"Cache-Control": "no-store"})
