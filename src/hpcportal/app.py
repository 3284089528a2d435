"""FastAPI application factory.

One process holds one ``Settings``, one database handle, one Slurm adapter and one
shared snapshot, together one ``composition.AppServices``; routers reach them through
the dependencies in ``dependencies``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hpcportal import __version__, log_redaction
from hpcportal.api import (
    admin,
    admin_accounts,
    admin_delivery,
    admin_qos,
    admin_reservations,
    admin_scheduler,
    alert_receiver,
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
    openapi,
    prometheus,
    reports,
    sessions,
    slurm_mail,
    templates,
    terminal,
    tokens,
    tus,
    uploads,
)
from hpcportal.api import delivery as user_delivery  # your channels (issue 15.2)
from hpcportal.api.http_metrics import HttpMetrics
from hpcportal.api.node_proxy import SessionClients
from hpcportal.api.params import RefuseControlInPath, check_request
from hpcportal.composition import AppServices, install
from hpcportal.config import Settings, get_settings
from hpcportal.db.session import Database
from hpcportal.errors import install_error_handlers
from hpcportal.ha.leadership import default_replica_id
from hpcportal.ha.wiring import coordinate
from hpcportal.lifecycle import TaskRunner
from hpcportal.services.admin.scheduler import SdiagSampler
from hpcportal.services.api_tokens import ApiTokenCache
from hpcportal.services.apps import AppCatalog
from hpcportal.services.auth import RevocationList
from hpcportal.services.delivery.digest import DigestBuilder
from hpcportal.services.delivery.sender import DeliverySender
from hpcportal.services.disk_alerts import DiskWatcher
from hpcportal.services.live import LiveHub
from hpcportal.services.monitoring.idle_gpu import IdleGpuChecker
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.notifications import NotificationDetector
from hpcportal.services.operations.backup_schedule import BackupScheduler
from hpcportal.services.reports import service as report_service
from hpcportal.services.reports.generation import ReportWorker
from hpcportal.services.reports.ingest import UsageIngester
from hpcportal.services.reports.schedules import ReportScheduler
from hpcportal.services.sessions import SessionContext
from hpcportal.services.sessions.tracker import SessionTracker
from hpcportal.services.snapshot import SnapshotService
from hpcportal.services.submit import SubmitContext
from hpcportal.services.templates import seed_site_templates
from hpcportal.services.terminal import TerminalService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.web import (
    accounting_pages,
    admin_accounts_pages,
    admin_console_pages,
    admin_delivery_pages,
    admin_monitoring_pages,
    admin_pages,
    admin_qos_pages,
    admin_reservation_pages,
    api_docs,
    auth_pages,
    cluster_pages,
    common,
    dashboard,
    file_pages,
    job_pages,
    notification_settings,
    report_pages,
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
    tasks = TaskRunner()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await tasks.start_all()
        try:
            yield
        finally:
            await tasks.stop_all()

    app = FastAPI(
        title="hpcportal",
        version=__version__,
        description=openapi.DESCRIPTION,
        openapi_tags=openapi.TAGS,
        generate_unique_id_function=openapi.operation_id,  # jobs_submit, files_read_path
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # web/api_docs.py serves Swagger UI from static/vendor
        redoc_url=None,
        lifespan=lifespan,
        # Unknown query parameters, control characters, NUL in bodies: 422 on /api/.
        dependencies=[Depends(check_request)],
    )
    _compose(app, settings, executor, tasks, start_refresher=start_refresher)

    install_error_handlers(app)
    log_redaction.install()  # no bearer secret from a URL reaches a log line
    app.add_middleware(RefuseControlInPath)
    app.add_middleware(HttpMetrics)  # counts every answer, refusals too
    if settings.trusted_proxies:
        # Added last, so outermost: every middleware, the rate limiter and the audit log
        # see the client's address. X-Forwarded-For counts only when the connection
        # comes from a configured proxy; anyone else's header changes nothing.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.include_router(health.router)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(cluster.router, prefix=API_PREFIX)
    app.include_router(job_actions.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(uploads.router, prefix=API_PREFIX)
    app.include_router(audit.router, prefix=API_PREFIX)
    app.include_router(admin.router, prefix=API_PREFIX)
    app.include_router(admin_qos.router, prefix=API_PREFIX)
    app.include_router(admin_scheduler.router, prefix=API_PREFIX)
    app.include_router(admin_delivery.router, prefix=API_PREFIX)  # outbox, site channels
    app.include_router(admin_accounts.router, prefix=API_PREFIX)
    app.include_router(admin_reservations.router, prefix=API_PREFIX)
    app.include_router(templates.router, prefix=API_PREFIX)
    app.include_router(apptainer.router, prefix=API_PREFIX)
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(files.router, prefix=API_PREFIX)
    app.include_router(tus.router, prefix=API_PREFIX)
    app.include_router(alerts.router, prefix=API_PREFIX)
    app.include_router(alert_receiver.router, prefix=API_PREFIX)  # Alertmanager (issue 15.5)
    app.include_router(slurm_mail.router, prefix=API_PREFIX)  # hpcportal-mailprog (15.4)
    app.include_router(live.router, prefix=API_PREFIX)
    app.include_router(user_delivery.router, prefix=API_PREFIX)  # before /notifications/{id}
    app.include_router(notifications.router, prefix=API_PREFIX)
    app.include_router(dashboards.router, prefix=API_PREFIX)
    app.include_router(apps.router, prefix=API_PREFIX)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(terminal.router, prefix=API_PREFIX)
    app.include_router(prometheus.router, prefix=API_PREFIX)
    app.include_router(reports.router, prefix=API_PREFIX)
    app.include_router(node_proxy.router)
    app.include_router(api_docs.docs_router(API_PREFIX, app.title))
    openapi.install(app)  # each route's errors as ErrorResponse, in the spec
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
    app.include_router(admin_pages.router)
    app.include_router(admin_qos_pages.router)
    app.include_router(admin_accounts_pages.router)
    app.include_router(admin_reservation_pages.router)
    app.include_router(admin_console_pages.router)
    app.include_router(admin_monitoring_pages.router)
    app.include_router(admin_delivery_pages.router)
    app.include_router(session_pages.router)
    app.include_router(report_pages.router)
    return app


def _compose(
    app: FastAPI,
    settings: Settings,
    executor: SlurmExecutor,
    tasks: TaskRunner,
    *,
    start_refresher: bool,
) -> None:
    """The composition root: build each long-lived part once, keep them on the app as
    one ``AppServices`` (read through ``composition.services_of``; routers through
    ``dependencies``), and register what runs in the background with ``tasks``, in the
    order it starts (it stops in reverse). A new part: build it here, add a field to
    ``AppServices`` and pass it below."""
    runas = executor.runas
    adapter = SlurmAdapter(executor, cache_seconds=settings.accounting_cache_seconds)
    snapshot = SnapshotService(adapter, settings)
    database = Database(settings)
    apptainer_catalog = apptainer.create_catalog(settings)
    revocations = RevocationList(settings.revocation_sync_seconds)
    app_catalog = AppCatalog.load(settings)
    submit = SubmitContext(settings, adapter, runas, database, apptainer_catalog)
    session_context = SessionContext(submit, app_catalog)
    detector = NotificationDetector(database, adapter, settings)
    tracker = SessionTracker(session_context)
    hub = LiveHub(
        snapshot,
        settings,
        database=database,
        runas=runas,
        revocations=revocations,
        detector=detector,
        tracker=tracker,
    )
    tracker.deliver = hub.deliver  # sessions ready / ending soon, to the bell
    watcher = DiskWatcher(settings, database, snapshot, runas=runas, deliver=hub.deliver)
    terminals = TerminalService(settings, runas, database)
    proxy_clients = SessionClients(settings)
    # Several replicas: one leads background work, the others follow (ha/).
    group = coordinate(settings, database, snapshot, hub, detector, watcher)
    # sdiag once per sdiag_sample_seconds per cluster: on the leader only, fenced writes.
    sdiag_sampler = SdiagSampler(settings, database, adapter, group.leadership)
    # Finished jobs into the reports' usage store: on the leader only, fenced windows.
    usage_ingester = UsageIngester(settings, database, adapter, group.leadership)
    monitoring = MonitoringService.from_settings(settings)  # Prometheus (prometheus_url)
    # Idle GPUs told to their jobs' owners once: on the leader only, fenced writes.
    idle_gpus = IdleGpuChecker(settings, database, snapshot, monitoring, group.leadership,
                               deliver=hub.deliver)  # fmt: skip
    # The outbox's messages sent by the leader only, one in flight, fenced claims and marks.
    delivery_sender = DeliverySender(settings, database, group.leadership)
    install(
        app,
        AppServices(
            settings=settings,
            executor=executor,
            runas=runas,
            adapter=adapter,
            snapshot=snapshot,
            database=database,
            apptainer=apptainer_catalog,
            revocations=revocations,
            api_token_cache=ApiTokenCache(settings.api_token_cache_seconds),
            apps=app_catalog,
            submit=submit,
            sessions=session_context,
            detector=detector,
            tracker=tracker,
            live=hub,
            disk_watcher=watcher,
            terminals=terminals,
            proxy_clients=proxy_clients,
            tasks=tasks,
            leadership=group.leadership,
            replicator=group.replicator,
            sdiag_sampler=sdiag_sampler,
            usage_ingester=usage_ingester,
            monitoring=monitoring,
            idle_gpus=idle_gpus,
            delivery_sender=delivery_sender,
        ),
    )

    async def seed_templates() -> None:
        await run_in_threadpool(seed_site_templates, database)

    async def dispose_database() -> None:
        database.dispose()

    tasks.add("database", start=seed_templates, stop=dispose_database)
    tasks.add("leader lease", start=group.leadership.start, stop=group.leadership.stop)
    tasks.add("live hub", start=hub.start, stop=hub.stop)  # hears the first refresh
    if group.replicator is not None:  # the leader's snapshots, before any refresh
        tasks.add("replication", start=group.replicator.start, stop=group.replicator.stop)
    tasks.add(
        "snapshot refresher", start=snapshot.start if start_refresher else None, stop=snapshot.stop
    )
    tasks.add("disk watcher", start=watcher.start, stop=watcher.stop)
    tasks.add("prometheus client", stop=monitoring.aclose)
    # Once per backup_every_hours, on the leader only (a no-op without backup_dir).
    backups = BackupScheduler(settings, database, group.leadership)
    tasks.add("scheduled backups", start=backups.start, stop=backups.stop)
    tasks.add(
        "scheduler statistics",
        start=sdiag_sampler.start if start_refresher else None,
        stop=sdiag_sampler.stop,
    )
    tasks.add(
        "idle-GPU checks", start=idle_gpus.start if start_refresher else None, stop=idle_gpus.stop
    )
    tasks.add("usage store ingest", start=usage_ingester.start if start_refresher else None,
              stop=usage_ingester.stop)  # fmt: skip
    # Reports: every replica generates queued ones; the leader runs schedules, retention.
    report_worker = ReportWorker(settings, database,
                                 report_service.builder(settings, database, adapter),
                                 report_service.renderer(settings), default_replica_id(settings),
                                 deliver=hub.deliver)  # fmt: skip
    report_scheduler = ReportScheduler(settings, database, group.leadership,
                                       report_service.with_period)  # fmt: skip
    tasks.add("report worker", start=report_worker.start if start_refresher else None,
              stop=report_worker.stop)  # fmt: skip
    tasks.add("report schedules", start=report_scheduler.start if start_refresher else None,
              stop=report_scheduler.stop)  # fmt: skip
    tasks.add("delivery sender", start=delivery_sender.start if start_refresher else None,
              stop=delivery_sender.stop)  # fmt: skip
    # Digests, quiet hours and rate-limited messages folded into the outbox (leader only).
    digests = DigestBuilder(settings, database, group.leadership)
    tasks.add("delivery digests", start=digests.start if start_refresher else None,
              stop=digests.stop)  # fmt: skip
    tasks.add("node proxy clients", stop=proxy_clients.aclose)
    tasks.add("terminals", stop=terminals.stop)  # hang up every shell first
