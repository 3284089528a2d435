"""The application's long-lived parts, as one typed value.

``app._compose`` (the composition root) builds every part once, puts them in one
frozen ``AppServices`` and stores it on the app with ``install``; everything else
reads it through ``services_of`` (``dependencies.py`` for routers and pages, a
WebSocket endpoint or an exception handler with the connection it has). So the set of
parts is written down once, with its types, and a misspelt or missing part is a type
error rather than an ``AttributeError`` at the first request.

This module sits beside ``app.py`` rather than in it: routers, pages and services
import it, and ``app.py`` imports every router. It names parts but builds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.ha.leadership import Leadership
from hpcportal.ha.replication import Replicator
from hpcportal.lifecycle import TaskRunner
from hpcportal.runas import RunAs
from hpcportal.services.admin.scheduler import SdiagSampler
from hpcportal.services.api_tokens import ApiTokenCache
from hpcportal.services.apps import AppCatalog
from hpcportal.services.apptainer import ApptainerCatalog
from hpcportal.services.auth import RevocationList
from hpcportal.services.delivery.sender import DeliverySender
from hpcportal.services.disk_alerts import DiskWatcher
from hpcportal.services.live import LiveHub
from hpcportal.services.monitoring.idle_gpu import IdleGpuChecker
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.notifications import NotificationDetector
from hpcportal.services.reports.ingest import UsageIngester
from hpcportal.services.sessions import SessionContext
from hpcportal.services.sessions.tracker import SessionTracker
from hpcportal.services.snapshot import SnapshotService
from hpcportal.services.submit import SubmitContext
from hpcportal.services.terminal import TerminalService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor

if TYPE_CHECKING:  # a router module: importing it here at run time would be a cycle
    from hpcportal.api.node_proxy import SessionClients


@dataclass(frozen=True, kw_only=True, slots=True)
class AppServices:
    """One process's parts, built once by ``app._compose``; one field per part.

    Frozen: a part is replaced only by building a new value (tests swap the adapter
    with ``dataclasses.replace`` and ``install``), never by assigning to the app.
    """

    settings: Settings
    #: Runs Slurm commands; only ``slurm/`` uses it (through ``adapter``).
    executor: SlurmExecutor
    #: The run-as boundary (``executor.runas``): how services act as a user.
    runas: RunAs
    adapter: SlurmAdapter
    snapshot: SnapshotService
    database: Database
    apptainer: ApptainerCatalog
    revocations: RevocationList
    api_token_cache: ApiTokenCache
    apps: AppCatalog
    submit: SubmitContext
    sessions: SessionContext
    detector: NotificationDetector
    tracker: SessionTracker
    live: LiveHub
    disk_watcher: DiskWatcher
    terminals: TerminalService
    proxy_clients: SessionClients
    #: What runs in the background, started and stopped by the app's lifespan.
    tasks: TaskRunner
    #: Which replica leads the background work (always this one with one server).
    leadership: Leadership = field(default_factory=Leadership.single)
    #: The Redis side of several replicas; None with one server.
    replicator: Replicator | None = None
    #: Reads sdiag on the leader for the admin console's scheduler page.
    sdiag_sampler: SdiagSampler | None = None
    #: Prometheus behind the portal (panels, the catalog, raw PromQL for admins).
    monitoring: MonitoringService | None = None
    #: Tells owners of running jobs whose GPUs stay idle, once (leader only).
    idle_gpus: IdleGpuChecker | None = None
    #: Reads finished jobs into the reports' usage store (leader only).
    usage_ingester: UsageIngester | None = None
    #: Sends the outbox's messages (email, Slack, webhooks) on the leader only.
    delivery_sender: DeliverySender | None = None


def install(app: Starlette, services: AppServices) -> None:
    """Keep ``services`` on ``app`` (the one place that writes it)."""
    app.state.services = services


def services_of(source: HTTPConnection | Starlette) -> AppServices:
    """The parts of the app serving ``source`` (a request or WebSocket) or of ``source``
    itself (an app); the one place that reads them."""
    app = source.app if isinstance(source, HTTPConnection) else source
    services = app.state.services
    if not isinstance(services, AppServices):
        raise TypeError(f"app.state.services is {type(services).__name__}, not AppServices")
    return services
