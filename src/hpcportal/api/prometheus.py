"""Prometheus behind the portal: the raw API for admins, named panels for everyone.

``/prometheus/...`` mirrors Prometheus' HTTP API (query, query_range, labels, label
values, series, targets, rules, alerts, status/config, health) with its answers
decoded and re-encoded in its own format (``{"status": "success", "data": ...}``).
PromQL is for admins, or for everyone when ``prometheus_user_promql`` is on; targets,
rules, alerts and the configuration are for admins; health is for anyone logged in.

``/monitoring/...`` are the named panels (``services.monitoring``): the catalog with
what this Prometheus can show, a node's panel (for whoever may see nodes) and a job's
panel (for whoever may see the job, under Slurm's rules: another user's job is a 404
as on ``/jobs/{id}``), with every label filled in by the server.

Prometheus not configured, unreachable or too slow: 503 with the reason; a PromQL
error: 422 with Prometheus' message.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from hpcportal.dependencies import (
    AdapterDep,
    AdminUser,
    CurrentUser,
    DatabaseDep,
    MonitoringDep,
    SnapshotDep,
    strict_query,
)
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.prometheus.client import Success
from hpcportal.prometheus.models import (
    Alerts,
    Config,
    Health,
    Labels,
    Matrix,
    QueryResult,
    RuleGroups,
    Targets,
)
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.identity import Principal
from hpcportal.services.monitoring import events, idle_gpu
from hpcportal.services.monitoring import history as cluster_history
from hpcportal.services.monitoring.overview import Overview, overview
from hpcportal.services.monitoring.service import JobWindow, PanelData, PanelList
from hpcportal.services.snapshot import SnapshotService
from hpcportal.services.visibility import for_snapshot
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus

router = APIRouter()

PromQL = Annotated[str, Query(min_length=1, max_length=2000, description="PromQL")]
Moment = Annotated[
    str | None,
    Query(max_length=40, description="Unix seconds or RFC 3339 (Prometheus' forms)"),
]
Matches = Annotated[list[str], Query(alias="match[]", max_length=20)]
_LIVE = {JobStatus.RUNNING, JobStatus.SUSPENDED, JobStatus.COMPLETING}


def _moment(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        try:
            number = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InvalidInput(f"{name} must be Unix seconds or an RFC 3339 time.") from None
    if not math.isfinite(number) or not 0 <= number <= 253402300799:
        raise InvalidInput(f"{name} must be between 1970 and the year 9999.")
    return number


def _step(value: str, name: str = "step") -> float:
    """Seconds, as a number or Prometheus' duration (``15s``, ``1m``, ``2h``)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = value.strip()
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    try:
        number = float(text)
    except ValueError:
        raise InvalidInput(f"{name} must be seconds (15) or a duration (15s, 1m).") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be a finite number of seconds.")
    return number


# --- the raw API -------------------------------------------------------------------------


@router.get(
    "/prometheus/query",
    response_model=Success[QueryResult],
    tags=["prometheus"],
    dependencies=[strict_query("query", "time")],
)
async def query(
    who: CurrentUser, monitoring: MonitoringDep, query: PromQL, time: Moment = None
) -> Success[QueryResult]:
    """An instant query (admins; everyone with ``prometheus_user_promql``)."""
    return await monitoring.query(who, query, _moment(time, "time"))


@router.get(
    "/prometheus/query_range",
    response_model=Success[Matrix],
    tags=["prometheus"],
    dependencies=[strict_query("query", "start", "end", "step")],
)
async def query_range(
    who: CurrentUser,
    monitoring: MonitoringDep,
    query: PromQL,
    start: Annotated[str, Query(max_length=40)],
    end: Annotated[str, Query(max_length=40)],
    step: Annotated[str, Query(max_length=20)],
) -> Success[Matrix]:
    """A range query, at most ``prometheus_max_points`` steps per series."""
    first, last = _moment(start, "start"), _moment(end, "end")
    assert first is not None and last is not None
    return await monitoring.query_range(who, query, first, last, _step(step))


@router.get(
    "/prometheus/labels",
    response_model=Success[list[str]],
    tags=["prometheus"],
    dependencies=[strict_query("match[]", "start", "end")],
)
async def labels(
    who: CurrentUser,
    monitoring: MonitoringDep,
    match: Matches = [],  # noqa: B006 (FastAPI copies defaults)
    start: Moment = None,
    end: Moment = None,
) -> Success[list[str]]:
    client = monitoring.check_promql(who)
    return await client.labels(match, _moment(start, "start"), _moment(end, "end"))


@router.get(
    "/prometheus/label/{name}/values",
    response_model=Success[list[str]],
    tags=["prometheus"],
    dependencies=[strict_query("match[]", "start", "end")],
)
async def label_values(
    name: str,
    who: CurrentUser,
    monitoring: MonitoringDep,
    match: Matches = [],  # noqa: B006 (FastAPI copies defaults)
    start: Moment = None,
    end: Moment = None,
) -> Success[list[str]]:
    if not name or not (name.replace("_", "a").isalnum() and name.isascii()):
        raise InvalidInput(f"{name[:40]!r} is not a label name.")
    client = monitoring.check_promql(who)
    return await client.label_values(name, match, _moment(start, "start"), _moment(end, "end"))


@router.get(
    "/prometheus/series",
    response_model=Success[list[Labels]],
    tags=["prometheus"],
    dependencies=[strict_query("match[]", "start", "end")],
)
async def series(
    who: CurrentUser,
    monitoring: MonitoringDep,
    match: Matches,
    start: Moment = None,
    end: Moment = None,
) -> Success[list[Labels]]:
    if not match:
        raise InvalidInput("Name at least one series selector in match[].")
    client = monitoring.check_promql(who)
    return await client.series(match, _moment(start, "start"), _moment(end, "end"))


@router.get(
    "/prometheus/targets",
    response_model=Success[Targets],
    tags=["prometheus"],
    dependencies=[strict_query("state")],
)
async def targets(
    _: AdminUser,
    monitoring: MonitoringDep,
    state: Annotated[str | None, Query(pattern="^(active|dropped|any)$")] = None,
) -> Success[Targets]:
    """What Prometheus scrapes and how each scrape went (admins)."""
    return await monitoring.prometheus().targets(state)


@router.get(
    "/prometheus/rules",
    response_model=Success[RuleGroups],
    tags=["prometheus"],
    dependencies=[strict_query("type")],
)
async def rules(
    _: AdminUser,
    monitoring: MonitoringDep,
    type: Annotated[str | None, Query(pattern="^(alert|record)$")] = None,
) -> Success[RuleGroups]:
    return await monitoring.prometheus().rules(type)


@router.get(
    "/prometheus/alerts",
    response_model=Success[Alerts],
    tags=["prometheus"],
    dependencies=[strict_query()],
)
async def alerts(_: AdminUser, monitoring: MonitoringDep) -> Success[Alerts]:
    return await monitoring.prometheus().alerts()


@router.get(
    "/prometheus/status/config",
    response_model=Success[Config],
    tags=["prometheus"],
    dependencies=[strict_query()],
)
async def config(_: AdminUser, monitoring: MonitoringDep) -> Success[Config]:
    return await monitoring.prometheus().config()


@router.get(
    "/prometheus/health", response_model=Health, tags=["prometheus"], dependencies=[strict_query()]
)
async def health(_: CurrentUser, monitoring: MonitoringDep) -> Health:
    """Whether Prometheus is healthy and ready, and its version; 503 if unreachable."""
    return await monitoring.prometheus().health()


# --- named panels ----------------------------------------------------------------------


@router.get(
    "/monitoring/panels",
    response_model=PanelList,
    tags=["monitoring"],
    dependencies=[strict_query()],
)
async def panels(_: CurrentUser, monitoring: MonitoringDep) -> PanelList:
    """The metric catalog: each panel, whether this Prometheus has an exporter for it
    (and which), or why not."""
    return await monitoring.panels()


@router.get(
    "/monitoring/nodes/{name}/panels/{panel}",
    response_model=PanelData,
    tags=["monitoring"],
    dependencies=[strict_query("range", "step")],
)
async def node_panel(
    name: str,
    panel: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    monitoring: MonitoringDep,
    range: Annotated[float, Query(ge=60, le=31 * 86400)] = 3600,
    step: Annotated[str | None, Query(max_length=20)] = None,
) -> PanelData:
    """One panel of one node over the last ``range`` seconds."""
    snap = await snapshot.current()
    for_snapshot(who, snap).require("nodes")
    if name not in snap.nodes_by_name:
        raise NotFound(f"No node named {name!r}.")
    return await monitoring.node_panel(name, panel, range, _step(step) if step else None)


@router.get(
    "/monitoring/jobs/{job_id}/panels/{panel}",
    response_model=PanelData,
    tags=["monitoring"],
    dependencies=[strict_query("step")],
)
async def job_panel(
    job_id: str,
    panel: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    adapter: AdapterDep,
    monitoring: MonitoringDep,
    step: Annotated[str | None, Query(max_length=20)] = None,
) -> PanelData:
    """One panel of one job: its nodes over its lifetime, its own GPUs. A job you may
    not see is a 404, as on ``/jobs/{id}``; another user's job you may see is a 403:
    its figures, like its script and files, are for its owner and admins."""
    window = await _job_window(job_id, who, snapshot, adapter)
    return await monitoring.job_panel(window, panel, _step(step) if step else None)


@router.get(
    "/monitoring/jobs/{job_id}/events",
    response_model=events.GraphEvents,
    tags=["monitoring"],
    dependencies=[strict_query()],
)
async def job_events(
    job_id: str, who: CurrentUser, snapshot: SnapshotDep, adapter: AdapterDep
) -> events.GraphEvents:
    """The job's start and end, to mark on its graphs (same rights as its panels)."""
    window = await _job_window(job_id, who, snapshot, adapter)
    return events.job_events(window.start, window.end)


@router.get(
    "/monitoring/nodes/{name}/events",
    response_model=events.GraphEvents,
    tags=["monitoring"],
    dependencies=[strict_query("range")],
)
async def node_events(
    name: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    range: Annotated[float, Query(ge=60, le=31 * 86400)] = 3600,
) -> events.GraphEvents:
    """The node's drains, downs, resumes and reboots applied through the portal, and
    when Slurm set its current drain or down reason, over the last ``range`` seconds
    (who and why: admins only)."""
    snap = await snapshot.current()
    for_snapshot(who, snap).require("nodes")
    node = snap.nodes_by_name.get(name)
    if node is None:
        raise NotFound(f"No node named {name!r}.")
    since = datetime.now(UTC) - timedelta(seconds=range)
    return await run_in_threadpool(events.node_events, database, node, since,
                                   admin=who.is_admin)  # fmt: skip


async def _job_window(
    job_id: str, who: Principal, snapshot: SnapshotService, adapter: SlurmAdapter
) -> JobWindow:
    job_service.validate_job_id(job_id)
    snap = await snapshot.current()
    found: Job | AccountingRecord | None = snap.jobs_by_id.get(job_id)
    if found is None or not for_snapshot(who, snap).sees_job(found):
        # Not in the snapshot (or hidden there): slurmctld, then accounting, decide.
        meta = SnapshotMeta.of(snapshot.health())
        detail = await run_in_threadpool(job_service.find_job, snap, adapter, job_id, who, meta)
        found = detail.job or detail.accounting
    return _window(found, who)


@router.get(
    "/monitoring/history/{panel}",
    response_model=PanelData,
    tags=["monitoring"],
    dependencies=[strict_query("range")],
)
async def history_panel(
    panel: str,
    who: CurrentUser,
    snapshot: SnapshotDep,
    monitoring: MonitoringDep,
    range: cluster_history.HistoryRange = "day",
) -> PanelData:
    """Cluster history from the portal's own Slurm gauges as Prometheus kept them
    (so it costs Slurm nothing): ``cpus`` and ``gpus`` (allocated and total per
    partition) and ``jobs`` (jobs in the queue by state), over the last hour, day, week
    or month. Named queries only; the window is aligned to its step and shared."""
    found = cluster_history.panel_named(panel)
    vis = for_snapshot(who, await snapshot.current())
    vis.require("partitions")
    if found.needs == "jobs" and vis.hides("jobs"):
        raise Forbidden(
            "This cluster keeps jobs private (PrivateData=jobs in Slurm), so the counts "
            "of everyone's jobs are not shown."
        )
    return await cluster_history.history(monitoring, found, range)


@router.get(
    "/monitoring/idle-gpus",
    response_model=idle_gpu.IdleGpuList,
    tags=["monitoring"],
    dependencies=[strict_query()],
)
async def idle_gpus(_: AdminUser, database: DatabaseDep) -> idle_gpu.IdleGpuList:
    """Running jobs whose GPUs stayed below ``gpu_idle_threshold_percent`` for
    ``gpu_idle_minutes`` and whose owners were told (once each), newest first."""
    return await run_in_threadpool(idle_gpu.listing, database)


@router.get(
    "/monitoring/overview",
    response_model=Overview,
    tags=["monitoring"],
    dependencies=[strict_query()],
)
async def monitoring_overview(
    _: AdminUser, database: DatabaseDep, monitoring: MonitoringDep
) -> Overview:
    """For admins: Prometheus' health, its targets and how each scrape went, the alerts
    firing, and the idle-GPU list. Prometheus down is not an error here: ``error`` says
    why its parts are empty (the idle-GPU list is the portal's own)."""
    idle = await run_in_threadpool(idle_gpu.listing, database)
    return await overview(monitoring, idle.items)


def _window(found: Job | AccountingRecord | None, who: Principal) -> JobWindow:
    if found is None:  # a job only the portal remembers: no nodes, no times
        raise NotFound("Slurm no longer knows this job, so it has no figures to show.")
    if not job_service.can_see_private(found, who):
        raise Forbidden(f"The figures of job {found.job_id} are for its owner and admins.")
    end = None if found.status in _LIVE else found.end_time
    return JobWindow(found.job_id, list(found.node_names), found.start_time, end)
