"""FastAPI application factory.

One process holds one ``Settings``, one database handle, one Slurm adapter and one
shared snapshot; routers reach them through the dependencies in ``api.deps``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from hpcportal import __version__, log_redaction
from hpcportal.api import (
    alerts,
    apps,
    apptainer,
    audit,
    auth,
    cluster,
    dashboards,
    files,
    health,
    job_actions,
    jobs,
    live,
    node_proxy,
    notifications,
    sessions,
    templates,
    terminal,
    tokens,
    tus,
    uploads,
)
from hpcportal.api.params import RefuseControlInPath, check_request
from hpcportal.config import Settings, get_settings
from hpcportal.db.session import Database
from hpcportal.errors import install_error_handlers
from hpcportal.services.apps import AppCatalog
from hpcportal.services.auth import RevocationList
from hpcportal.services.session_tracker import SessionTracker
from hpcportal.services.sessions import SessionContext
from hpcportal.services.snapshot import SnapshotService
from hpcportal.services.submit import SubmitContext
from hpcportal.services.templates import seed_site_templates
from hpcportal.services.terminal import TerminalService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.web import (
    accounting_pages,
    api_docs,
    auth_pages,
    cluster_pages,
    common,
    dashboard,
    file_pages,
    job_pages,
    notification_settings,
    session_pages,
    submit_pages,
    template_pages,
)
from hpcportal.web import terminal as terminal_page

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    executor: SlurmExecutor | None = None,
    start_refresher: bool = True,
) -> FastAPI:
    """Build the app. Tests pass their own settings, or an executor to count calls."""
    settings = settings or get_settings()
    executor = executor or SlurmExecutor.from_settings(settings)
    adapter = SlurmAdapter(executor, cache_seconds=settings.accounting_cache_seconds)
    snapshot = SnapshotService(adapter, settings)
    database = Database(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(seed_site_templates, database)
        await hub.start()  # before the refresher, so it hears the first refresh
        if start_refresher:
            await snapshot.start()
        try:
            yield
        finally:
            await app.state.terminals.stop()  # hang up every shell
            await hub.stop()
            await snapshot.stop()
            client = getattr(app.state, "proxy_client", None)
            if client is not None:
                await client.aclose()
            database.dispose()

    app = FastAPI(
        title="hpcportal",
        version=__version__,
        description="Web portal for Slurm clusters: read API over one shared snapshot.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # web/api_docs.py serves Swagger UI from static/vendor
        redoc_url=None,
        lifespan=lifespan,
        # Unknown query parameters, control characters, NUL in bodies: 422 on /api/.
        dependencies=[Depends(check_request)],
    )
    app.state.settings = settings
    app.state.executor = executor
    app.state.adapter = adapter
    app.state.snapshot = snapshot
    app.state.db = database
    app.state.apptainer = apptainer.create_catalog(settings)
    app.state.revocations = RevocationList(settings.revocation_sync_seconds)
    app.state.apps = AppCatalog.load(settings)
    submit_context = SubmitContext(settings, adapter, executor.runas, database, app.state.apptainer)
    tracker = SessionTracker(SessionContext(submit_context, app.state.apps))
    app.state.live = hub = live.create_hub(
        settings, snapshot, database, adapter, executor.runas, app.state.revocations, tracker
    )

    app.state.terminals = TerminalService(settings, executor.runas, database)

    install_error_handlers(app)
    log_redaction.install()  # no bearer secret from a URL reaches a log line
    app.add_middleware(RefuseControlInPath)
    app.include_router(health.router)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(cluster.router, prefix=API_PREFIX)
    app.include_router(job_actions.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(uploads.router, prefix=API_PREFIX)
    app.include_router(audit.router, prefix=API_PREFIX)
    app.include_router(templates.router, prefix=API_PREFIX)
    app.include_router(apptainer.router, prefix=API_PREFIX)
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(files.router, prefix=API_PREFIX)
    app.include_router(tus.router, prefix=API_PREFIX)
    app.include_router(alerts.router, prefix=API_PREFIX)
    app.include_router(live.router, prefix=API_PREFIX)
    app.include_router(notifications.router, prefix=API_PREFIX)
    app.include_router(dashboards.router, prefix=API_PREFIX)
    app.include_router(apps.router, prefix=API_PREFIX)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(terminal.router, prefix=API_PREFIX)
    app.include_router(node_proxy.router)
    app.include_router(api_docs.docs_router(API_PREFIX, app.title))
    # The browser UI: pages at "/", their assets at "/static" (hpcportal.web).
    app.add_exception_handler(common.PageException, common.handle_page_exception)
    app.mount("/static", StaticFiles(directory=common.STATIC_DIR), name="static")
    app.include_router(notification_settings.router)
    app.include_router(job_pages.router)
    app.include_router(file_pages.router)
    app.include_router(terminal_page.router)
    app.include_router(auth_pages.router)
    app.include_router(dashboard.router)
    app.include_router(cluster_pages.router)
    app.include_router(submit_pages.router)
    app.include_router(template_pages.router)
    app.include_router(accounting_pages.router)
    app.include_router(session_pages.router)
    return app
