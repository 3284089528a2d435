"""Monitoring: Prometheus behind the portal, safe for users and cheap for Prometheus.

- **Raw PromQL** (``/api/v1/prometheus/...``): admins always; other users only when
  ``prometheus_user_promql`` is on. Range queries are bounded before they are sent
  (``prometheus_max_points`` steps per series) and answers after
  (``prometheus_max_samples``), with 422s that say what to change.
- **Named panels** (``/api/v1/monitoring/...``): a logical metric of the catalog with
  its labels filled in by the server: a node's name, or a job's nodes and lifetime and
  its GPUs (the GPU exporter's ``hpc_job`` label). The caller's right to see the node
  or the job is checked by the router (Slurm's visibility rules) before anything here
  runs; nothing a user sends becomes PromQL.
- **Shared answers**: a panel's window is aligned to its step and its answer shared
  per (query, window) for ``prometheus_cache_seconds``, one request in flight per key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.prometheus.client import PrometheusClient, Success
from hpcportal.prometheus.models import Matrix, QueryResult, Vector
from hpcportal.services.identity import Principal
from hpcportal.services.monitoring import catalog
from hpcportal.services.monitoring.cache import SharedAnswers, align, panel_step

#: The longest window a panel shows (a node's history, a long job's lifetime).
MAX_PANEL_SECONDS = 31 * 86400.0


class PanelInfo(BaseModel):
    name: str
    title: str
    unit: str
    #: ``node``: one series per node; ``gpu``: one per GPU.
    scope: catalog.Scope
    available: bool
    #: Which exporter answers it here (``node_exporter``, ``dcgm_exporter``, ...).
    exporter: str | None = None
    #: Whether it can be shown for a job (a GPU exporter must name the job).
    for_jobs: bool = False
    reason: str | None = None


class PanelList(BaseModel):
    items: list[PanelInfo]


class PanelSeries(BaseModel):
    #: ``node001`` or ``gpu001 GPU 0``.
    name: str
    labels: dict[str, str]
    #: One value per timestamp of the panel; null where Prometheus has none.
    values: list[float | None]


class PanelData(BaseModel):
    panel: str
    title: str
    unit: str
    available: bool
    reason: str | None = None
    exporter: str | None = None
    query: str | None = None
    start: float
    end: float
    step: float
    timestamps: list[float]
    series: list[PanelSeries]


@dataclass(frozen=True, slots=True)
class JobWindow:
    """What a job panel needs of a job, from the snapshot or accounting."""

    job_id: int
    nodes: Sequence[str]
    start: datetime | None
    end: datetime | None


class MonitoringService:
    def __init__(
        self,
        settings: Settings,
        client: PrometheusClient | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.metrics = catalog.build(settings.prometheus_metric_sources)
        self.answers: SharedAnswers[Success[Matrix]] = SharedAnswers(
            ttl=settings.prometheus_cache_seconds
        )
        self.names: SharedAnswers[frozenset[str]] = SharedAnswers(
            ttl=settings.prometheus_catalog_seconds, size=1
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitoringService:
        client = None
        if settings.prometheus_url:
            client = PrometheusClient(settings.prometheus_url, settings.prometheus_timeout)
        return cls(settings, client)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    # --- access ---------------------------------------------------------------------

    def prometheus(self) -> PrometheusClient:
        if self.client is None:  # not a failure: this portal has no monitoring
            raise NotFound(
                "Monitoring is off: no Prometheus is configured (prometheus_url is unset)."
            )
        return self.client

    def check_promql(self, who: Principal) -> PrometheusClient:
        """The client, for someone allowed to send raw PromQL."""
        if not (who.is_admin or self.settings.prometheus_user_promql):
            raise Forbidden(
                "Raw PromQL is for admins here (an admin can allow it for everyone with "
                "prometheus_user_promql); the named panels under /api/v1/monitoring show "
                "your jobs and the nodes."
            )
        return self.prometheus()

    # --- raw PromQL, bounded ----------------------------------------------------------

    async def query(self, who: Principal, promql: str, at: float | None) -> Success[QueryResult]:
        answer = await self.check_promql(who).query(promql, at)
        data = answer.data
        found = data.points() if isinstance(data, Matrix) else (
            len(data.result) if isinstance(data, Vector) else 1)  # fmt: skip
        self._check_samples(found)
        return answer

    async def query_range(
        self, who: Principal, promql: str, start: float, end: float, step: float
    ) -> Success[Matrix]:
        client = self.check_promql(who)
        self.check_range(start, end, step)
        answer = await client.query_range(promql, start, end, step)
        self._check_samples(answer.data.points())
        return answer

    def check_range(self, start: float, end: float, step: float) -> None:
        if not math.isfinite(step) or step <= 0:
            raise InvalidInput("step must be a positive number of seconds.")
        if end < start:
            raise InvalidInput("end must not be before start.")
        points = math.floor((end - start) / step) + 1
        most = self.settings.prometheus_max_points
        if points > most:
            smallest = math.ceil((end - start) / (most - 1))
            raise InvalidInput(
                f"This range query would return {points} points per series; the most is "
                f"{most}. Use a step of at least {smallest} s or a shorter window."
            )

    def _check_samples(self, found: int) -> None:
        most = self.settings.prometheus_max_samples
        if found > most:
            raise InvalidInput(
                f"Prometheus' answer has {found} samples; the most the portal passes on is "
                f"{most}. Narrow the query (fewer series, a larger step or a shorter window)."
            )

    # --- the catalog -------------------------------------------------------------------

    async def series_names(self) -> frozenset[str]:
        client = self.prometheus()

        async def fetch() -> frozenset[str]:
            return frozenset((await client.label_values("__name__")).data)

        return await self.names.get("__name__", fetch)

    async def resolved(self) -> dict[str, catalog.Resolved]:
        return catalog.resolve(self.metrics, set(await self.series_names()))

    async def panels(self) -> PanelList:
        items = []
        for found in (await self.resolved()).values():
            metric, source = found.metric, found.source
            items.append(PanelInfo(
                name=metric.name, title=metric.title, unit=metric.unit, scope=metric.scope,
                available=source is not None,
                exporter=source.exporter if source else None,
                for_jobs=source is not None and (metric.scope == "node" or
                                                 source.job_query is not None),
                reason=found.reason,
            ))  # fmt: skip
        return PanelList(items=items)

    async def _resolve(self, panel: str) -> catalog.Resolved:
        found = (await self.resolved()).get(panel)
        if found is None:
            names = ", ".join(m.name for m in self.metrics)
            raise NotFound(f"No panel named {panel!r}; the panels are {names}.")
        return found

    # --- panels ---------------------------------------------------------------------------

    async def node_panel(
        self, node: str, panel: str, seconds: float, step: float | None
    ) -> PanelData:
        if not 60 <= seconds <= MAX_PANEL_SECONDS:
            raise InvalidInput(f"range must be 60 to {MAX_PANEL_SECONDS:.0f} seconds.")
        found = await self._resolve(panel)
        now = self.clock()
        return await self._panel(found, now - seconds, now, step, live=True, node_names=[node])

    async def job_panel(self, job: JobWindow, panel: str, step: float | None) -> PanelData:
        found = await self._resolve(panel)
        now = self.clock()
        if job.start is None or not job.nodes:
            return _empty(found, now, "The job has not started: it has no nodes yet.")
        start = job.start.timestamp()
        end = min(job.end.timestamp(), now) if job.end is not None else now
        start = max(start, end - MAX_PANEL_SECONDS)
        live = job.end is None or job.end.timestamp() >= now
        return await self._panel(found, start, end, step, live=live, node_names=job.nodes,
                                 job_id=job.job_id)  # fmt: skip

    async def _panel(
        self,
        found: catalog.Resolved,
        start: float,
        end: float,
        step: float | None,
        *,
        live: bool,
        node_names: Sequence[str],
        job_id: int | None = None,
    ) -> PanelData:
        metric, source = found.metric, found.source
        if source is None:
            return _empty(found, end, found.reason)
        settings = self.settings
        if step is None:
            step = panel_step(end - start, settings.prometheus_panel_points,
                              settings.prometheus_min_step)  # fmt: skip
        elif not settings.prometheus_min_step <= step <= MAX_PANEL_SECONDS:
            raise InvalidInput(f"step must be {settings.prometheus_min_step:g} s or more.")
        first, last = align(start, end, step, live=live)
        self.check_range(first, last, step)
        window = f"{max(step, 4 * settings.prometheus_min_step):g}s"
        if job_id is not None and metric.scope == "gpu":
            if source.job_query is None:
                return _empty(found, end, f"{source.exporter} does not say which job uses a "
                              "GPU, so GPU figures are not shown per job.")  # fmt: skip
            job_m = catalog.job_matcher(settings.prometheus_gpu_job_label, job_id)
            promql = catalog.render(source.job_query, job=job_m, window=window)
        else:
            node_m = catalog.node_matcher(settings.prometheus_node_label, node_names)
            promql = catalog.render(source.node_query, node=node_m, window=window)
        answer = await self.shared_range(promql, first, last, step)
        timestamps, series = grid(answer.data, first, last, step, settings.prometheus_node_label)
        return PanelData(
            panel=metric.name, title=metric.title, unit=metric.unit, available=True,
            exporter=source.exporter, query=promql, start=first, end=last, step=step,
            timestamps=timestamps, series=series,
        )  # fmt: skip

    async def shared_range(
        self, promql: str, start: float, end: float, step: float
    ) -> Success[Matrix]:
        """One range query per (query, window) however many ask (``SharedAnswers``)."""
        client = self.prometheus()

        def fetch() -> Awaitable[Success[Matrix]]:
            return client.query_range(promql, start, end, step)

        answer = await self.answers.get((promql, start, end, step), fetch)
        self._check_samples(answer.data.points())
        return answer


def _empty(found: catalog.Resolved, at: float, reason: str | None) -> PanelData:
    metric = found.metric
    return PanelData(
        panel=metric.name, title=metric.title, unit=metric.unit, available=False,
        reason=reason, exporter=found.source.exporter if found.source else None,
        start=at, end=at, step=0.0, timestamps=[], series=[],
    )  # fmt: skip


def grid(
    matrix: Matrix, start: float, end: float, step: float, node_label: str
) -> tuple[list[float], list[PanelSeries]]:
    """The answer on the panel's time grid (one timestamp per step), one value list per
    series, ``None`` where a series has no (finite) sample."""
    count = round((end - start) / step) + 1
    timestamps = [round(start + i * step, 3) for i in range(count)]
    series = []
    for item in matrix.result:
        values: list[float | None] = [None] * count
        for at, text in item.values:
            index = round((at - start) / step)
            if 0 <= index < count:
                number = float(text)
                values[index] = number if math.isfinite(number) else None
        node = item.metric.get(node_label, "").rsplit(":", 1)[0] or "?"
        gpu = item.metric.get("gpu")
        name = f"{node} GPU {gpu}" if gpu is not None else node
        series.append(PanelSeries(name=name, labels=dict(item.metric), values=values))
    series.sort(key=lambda s: s.name)
    return timestamps, series
