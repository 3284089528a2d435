"""What the efficiency and system reports ask Prometheus, through ``MonitoringService``.

Report kinds build on a worker thread (``generation.Builder`` is blocking), while the
monitoring service is async: each read here opens a service of its own from the
settings, asks inside one ``asyncio.run`` and closes it, so nothing is shared with the
request loop's client. Only named queries are sent: the metric catalog's GPU
utilisation per job (as the idle-GPU check asks it) and the portal's own partition
gauges (the cluster-history panels). An unreachable or unconfigured Prometheus is
``NotAnswered`` with the reason, which the report prints instead of failing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from hpcportal.config import Settings
from hpcportal.errors import PortalError
from hpcportal.prometheus.client import masked_url
from hpcportal.prometheus.models import Vector
from hpcportal.services.monitoring import catalog
from hpcportal.services.monitoring.cache import align, panel_step
from hpcportal.services.monitoring.history import BY_NAME
from hpcportal.services.monitoring.service import MonitoringService, grid
from hpcportal.services.reports.document import Language, Period, Source

T = TypeVar("T")
#: How a read gets its monitoring service: from the settings, or a test's stand-in
#: Prometheus (``BuildContext.parts["monitoring_factory"]``).
Factory = Callable[[Settings], MonitoringService]
#: Queries in flight at once for the per-job GPU means.
_PARALLEL = 8


class NotAnswered(Exception):
    """Prometheus could not give the figures; the message says why (for the report)."""


@dataclass(frozen=True)
class JobRun:
    job_id: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class PartitionUse:
    """One partition's allocated / total over the period, on the panel's time grid."""

    timestamps: list[float]
    cpu: list[float | None]
    gpu: list[float | None]


def source(settings: Settings, period: Period, language: Language) -> Source:
    name = "Prometheus" if language == "en" else "Prometheus (모니터링)"
    return Source(name=name, window=period, detail=masked_url(settings.prometheus_url or ""))


def _blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to completion from blocking code, on a loop of its own."""

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(1) as pool:  # called from a loop's thread: use another
        return pool.submit(asyncio.run, main()).result()


def factory_of(parts: dict[str, object]) -> Factory:
    """The context's monitoring factory, or ``MonitoringService.from_settings``."""
    found = parts.get("monitoring_factory")
    return found if callable(found) else MonitoringService.from_settings


async def _with_monitoring(
    settings: Settings, factory: Factory, ask: Callable[[MonitoringService], Awaitable[T]]
) -> T:
    if not settings.prometheus_url:
        raise NotAnswered("Prometheus is not configured (prometheus_url is unset)")
    monitoring = factory(settings)
    try:
        return await ask(monitoring)
    except PortalError as exc:
        raise NotAnswered(getattr(exc, "message", None) or str(exc)) from exc
    finally:
        await monitoring.aclose()


def gpu_means(
    settings: Settings, runs: list[JobRun], factory: Factory = MonitoringService.from_settings
) -> dict[int, float]:
    """Each job's mean GPU utilisation (percent) over its run, for the jobs Prometheus
    has figures of; jobs it has none of are left out (not known to be idle)."""

    async def ask(monitoring: MonitoringService) -> dict[int, float]:
        found = (await monitoring.resolved()).get("gpu_util")
        job_query = found.source.job_query if found and found.source else None
        if job_query is None:
            raise NotAnswered("no GPU exporter here names the job using a GPU")
        client = monitoring.prometheus()
        step = max(settings.prometheus_min_step, 1.0)
        label = settings.prometheus_gpu_job_label
        limit = asyncio.Semaphore(_PARALLEL)

        async def mean(run: JobRun) -> tuple[int, float | None]:
            inner = catalog.render(job_query, job=catalog.job_matcher(label, run.job_id),
                                   window=f"{step:g}s")  # fmt: skip
            seconds = max(round((run.end - run.start).total_seconds()), round(step))
            promql = f"avg(avg_over_time(({inner})[{seconds}s:{step:g}s]))"
            async with limit:
                answer = await client.query(promql, run.end.timestamp())
            data = answer.data
            if not isinstance(data, Vector) or not data.result:
                return run.job_id, None
            value = float(data.result[0].value[1])
            return run.job_id, value if math.isfinite(value) else None

        pairs = await asyncio.gather(*(mean(r) for r in runs))
        return {job: value for job, value in pairs if value is not None}

    return _blocking(lambda: _with_monitoring(settings, factory, ask))


def partition_use(
    settings: Settings, period: Period, factory: Factory = MonitoringService.from_settings
) -> dict[str, PartitionUse]:
    """CPUs and GPUs allocated / total per partition over ``period``, from the portal's
    own gauges (``hpcportal_slurm_partition_cpus``/``_gpus``) as Prometheus kept them."""

    async def ask(monitoring: MonitoringService) -> dict[str, PartitionUse]:
        names = await monitoring.series_names()
        cpus, gpus = BY_NAME["cpus"], BY_NAME["gpus"]
        if cpus.series not in names:
            raise NotAnswered(f"Prometheus has no {cpus.series}: it does not scrape this "
                              "portal's /metrics")  # fmt: skip
        span = (period.end - period.start).total_seconds()
        step = panel_step(span, settings.prometheus_panel_points, settings.prometheus_min_step)
        first, last = align(period.start.timestamp(), period.end.timestamp(), step, live=True)
        out: dict[str, dict[str, dict[str, list[float | None]]]] = {}
        timestamps: list[float] = []
        for panel in (cpus, gpus):
            if panel.series not in names:
                continue
            answer = await monitoring.shared_range(panel.query, first, last, step)
            timestamps, series = grid(answer.data, first, last, step,
                                      settings.prometheus_node_label)  # fmt: skip
            for s in series:
                part, kind = s.labels.get("partition", "?"), s.labels.get("kind", "?")
                out.setdefault(part, {}).setdefault(panel.name, {})[kind] = s.values
        return {
            part: PartitionUse(timestamps, _share(by_panel.get("cpus", {}), len(timestamps)),
                               _share(by_panel.get("gpus", {}), len(timestamps)))
            for part, by_panel in sorted(out.items())
        }  # fmt: skip

    return _blocking(lambda: _with_monitoring(settings, factory, ask))


def _share(kinds: dict[str, list[float | None]], count: int) -> list[float | None]:
    """allocated / total at each step; None where either is missing or total is 0."""
    allocated = kinds.get("allocated", [None] * count)
    totals = kinds.get("total", [None] * count)
    return [a / t if a is not None and t else None
            for a, t in zip(allocated, totals, strict=False)]  # fmt: skip
