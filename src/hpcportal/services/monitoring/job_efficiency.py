"""How well a job uses what it holds: CPU, memory and GPUs, from Prometheus where a
per-job exporter measures the job, else from accounting.

Each figure says where it came from, because the sources are not equally true:

- **GPU utilisation**: the mean, over the job's lifetime, of its own GPUs (the GPU
  exporter's ``hpc_job`` label, DCGM exporter's names through the catalog's
  ``gpu_util`` job query, the very query of the job's GPU panel, so the two share one
  cached answer). nvidia_gpu_exporter cannot say which job holds a GPU: no figure.
- **GPU memory**: the peak share of its GPUs' memory the job used (DCGM's used/free).
- **CPU and memory**: Prometheus only through a per-job cgroup exporter (the catalog's
  ``JOB_FIGURES``: CPU seconds over allocated CPUs x lifetime, peak RSS over the
  memory asked for); never node_exporter's node-wide figures, which count every job
  on a shared node. Otherwise, for a running job, ``sstat``'s reading of its live
  steps (AveCPU x NTasks summed: CPU time so far over allocated CPUs x elapsed so far;
  peak MaxRSS over the memory asked for); for a finished job ``sacct``'s
  (``TotalCPU``, ``MaxRSS``), which Slurm only fills when steps end. slurmstepd
  samples at JobAcctGatherFrequency, so sstat lags by up to one sampling period.

Every query goes through ``MonitoringService.shared_range`` on the job panels' window
(aligned to its step), so any number of viewers cost Prometheus one query per figure
and refresh. Prometheus off or down is a reason on the GPU figures, never an error:
the accounting figures still answer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import Forbidden, NotFound, PortalError
from hpcportal.prometheus.models import Matrix
from hpcportal.services import jobs as job_service
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.efficiency import Efficiency, efficiency
from hpcportal.services.identity import Principal
from hpcportal.services.monitoring import catalog
from hpcportal.services.monitoring.cache import align, panel_step
from hpcportal.services.monitoring.service import MAX_PANEL_SECONDS, JobWindow, MonitoringService
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.visibility import for_accounting
from hpcportal.slurm.action_output import RunningUsage
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus

_LIVE = {JobStatus.RUNNING, JobStatus.SUSPENDED, JobStatus.COMPLETING}


Why = Literal[
    "job_running",  # CPU/memory: accounting fills them when the job ends
    "no_steps",  # running, but sstat has no live step yet (just started)
    "not_recorded",  # accounting has no such figure for the job
    "no_gpus",
    "monitoring_off",
    "not_started",
    "prometheus_error",
    "no_exporter",  # no exporter for this in Prometheus
    "not_per_job",  # the GPU exporter cannot say which job holds a GPU
    "no_figures",  # no series of this job in its window
]


class EfficiencyFigure(BaseModel):
    #: A ratio (0.5 is half); None when no source has it (``reason`` says why).
    value: float | None = None
    #: ``prometheus``, ``sacct``, ``sstat`` (a running job's live steps), or None.
    source: Literal["prometheus", "sacct", "sstat"] | None = None
    #: Prometheus: the exporter and series used, and the query; sacct: its fields.
    exporter: str | None = None
    metric: str | None = None
    query: str | None = None
    reason: str | None = None
    #: Why there is no value, for pages to translate (``reason`` says it in English).
    why: Why | None = None


class EfficiencyFigures(BaseModel):
    cpu: EfficiencyFigure
    memory: EfficiencyFigure
    gpu_utilisation: EfficiencyFigure
    gpu_memory: EfficiencyFigure


class EfficiencyWindow(BaseModel):
    """The job's lifetime as Prometheus was asked about it: aligned to ``step``."""

    start: float
    end: float
    step: float
    running: bool


class JobEfficiency(Efficiency):
    """The accounting figures as before (``cpu_efficiency``, ``memory_efficiency``,
    ...) and each figure with its source."""

    running: bool
    gpus: int
    window: EfficiencyWindow | None
    figures: EfficiencyFigures


def read(
    adapter: SlurmAdapter,
    snap: ClusterSnapshot,
    meta: SnapshotMeta,
    job_id: str,
    who: Principal,
) -> tuple[Efficiency, JobWindow, int, RunningUsage | None]:
    """Accounting's figures, the job's nodes and lifetime, and for a running job
    ``sstat``'s reading of its live steps (blocking).


    A job accounting hides from ``who`` is not found, as before; a job they may see
    but do not own is refused like its graphs: its figures are for its owner and admins.
    """
    base = efficiency(adapter.actions, job_id, for_accounting(who, adapter))
    found: Job | AccountingRecord | None = snap.jobs_by_id.get(job_id)
    if found is None:
        detail = job_service.find_job(snap, adapter, job_id, who, meta)
        found = detail.job or detail.accounting
    if found is None:
        raise NotFound(f"No job {job_id} in accounting.")
    if not job_service.can_see_private(found, who):
        raise Forbidden(f"The figures of job {found.job_id} are for its owner and admins.")
    end = None if found.status in _LIVE else found.end_time
    gpus = found.gpus if isinstance(found, Job) else found.tres_allocated.get("gres/gpu", 0)
    usage = None
    if end is None and found.start_time is not None:  # read as the portal, like sacct
        usage = adapter.actions.running_usage(str(found.job_id))
    window = JobWindow(found.job_id, list(found.node_names), found.start_time, end)
    return base, window, gpus, usage


async def measure(
    monitoring: MonitoringService | None,
    base: Efficiency,
    job: JobWindow,
    gpus: int,
    usage: RunningUsage | None = None,
    now: float | None = None,
) -> JobEfficiency:
    """Every figure of ``job`` from its best source. ``usage`` is sstat's reading of a
    running job, taken at ``now`` (epoch seconds; default the current time)."""
    running = job.end is None
    cpu, memory = _sacct_cpu(base, running), _sacct_memory(base, running)
    if running and usage is not None:
        at = now if now is not None else time.time()
        cpu, memory = _sstat_cpu(base, job, usage, at), _sstat_memory(base, usage)
    figures = EfficiencyFigures(
        cpu=cpu,
        memory=memory,
        gpu_utilisation=_none("no_gpus", "The job holds no GPUs."),
        gpu_memory=_none("no_gpus", "The job holds no GPUs."),
    )
    result = JobEfficiency(**base.model_dump(), running=running, gpus=gpus, window=None,
                           figures=figures)  # fmt: skip
    off = _unavailable(monitoring, job)
    if off is not None:
        if gpus:
            figures.gpu_utilisation = figures.gpu_memory = _none(*off)
        return result
    assert monitoring is not None
    try:
        await _from_prometheus(monitoring, result, job, base)
    except PortalError as exc:  # down, too slow, unreadable: accounting still answers
        if gpus:
            reason = f"Prometheus could not be asked: {exc}"
            figures.gpu_utilisation = figures.gpu_memory = _none("prometheus_error", reason)
    return result


def _unavailable(monitoring: MonitoringService | None, job: JobWindow) -> tuple[Why, str] | None:
    if monitoring is None or monitoring.client is None:
        return "monitoring_off", "Monitoring is off: no Prometheus is configured."
    if job.start is None or not job.nodes:
        return "not_started", "The job has not started."
    return None


@dataclass(frozen=True, slots=True)
class _Asker:
    """One job's range queries on its window, through the shared answers."""

    monitoring: MonitoringService
    window: EfficiencyWindow
    job_id: int

    async def __call__(self, source: catalog.Source, label: str) -> tuple[str, list[list[float]]]:
        assert source.job_query is not None
        rate = f"{max(self.window.step, 4 * self.monitoring.settings.prometheus_min_step):g}s"
        promql = catalog.render(source.job_query, window=rate,
                                job=catalog.job_matcher(label, self.job_id))  # fmt: skip
        w = self.window
        answer = await self.monitoring.shared_range(promql, w.start, w.end, w.step)
        return promql, _values(answer.data)


async def _from_prometheus(
    monitoring: MonitoringService, result: JobEfficiency, job: JobWindow, base: Efficiency
) -> None:
    window = _window(monitoring, job)
    result.window = window
    ask = _Asker(monitoring, window, job.job_id)
    extra = catalog.resolve(catalog.JOB_FIGURES, set(await monitoring.series_names()))
    figures = result.figures
    assert job.start is not None
    end = job.end.timestamp() if job.end is not None else monitoring.clock()
    lifetime = max(end - job.start.timestamp(), 0.0)
    cpu = extra["job_cpu_seconds"].source
    if cpu is not None and lifetime and base.cpus:
        promql, series = await ask(cpu, catalog.CGROUP_JOB_LABEL)
        if series:  # a counter per node: its highest value is the CPU time used there
            used = sum(max(values) for values in series)
            figures.cpu = _measured(cpu, promql, used / (lifetime * base.cpus))
    memory = extra["job_memory_rss"].source
    if memory is not None and base.memory_requested_mb:
        promql, series = await ask(memory, catalog.CGROUP_JOB_LABEL)
        if series:
            peak_mb = sum(max(values) for values in series) / 1048576
            figures.memory = _measured(memory, promql, peak_mb / base.memory_requested_mb)
    if result.gpus:
        await _gpus(monitoring, figures, ask, extra["gpu_memory_share"])


async def _gpus(
    monitoring: MonitoringService,
    figures: EfficiencyFigures,
    ask: _Asker,
    share: catalog.Resolved,
) -> None:
    label = monitoring.settings.prometheus_gpu_job_label
    util = (await monitoring.resolved())["gpu_util"]
    if util.source is None:
        figures.gpu_utilisation = figures.gpu_memory = _none("no_exporter", util.reason)
        return
    if util.source.job_query is None:
        reason = (f"{util.source.exporter} does not say which job uses a GPU, so GPU "
                  "figures are not shown per job.")  # fmt: skip
        figures.gpu_utilisation = figures.gpu_memory = _none("not_per_job", reason)
        return
    no_figures = (f"Prometheus has no figures for this job's GPUs ({util.source.series} "
                  f"with {label}).")  # fmt: skip
    promql, series = await ask(util.source, label)
    samples = [v for values in series for v in values]
    figures.gpu_utilisation = (
        _measured(util.source, promql, sum(samples) / len(samples) / 100)
        if samples else _none("no_figures", no_figures))  # fmt: skip
    if share.source is None:
        figures.gpu_memory = _none("no_exporter", share.reason)
        return
    promql, series = await ask(share.source, label)
    figures.gpu_memory = (
        _measured(share.source, promql, max(max(values) for values in series))
        if series else _none("no_figures", no_figures))  # fmt: skip


def _window(monitoring: MonitoringService, job: JobWindow) -> EfficiencyWindow:
    """The job panels' window (``MonitoringService.job_panel``), so answers are shared."""
    settings, now = monitoring.settings, monitoring.clock()
    assert job.start is not None
    start = job.start.timestamp()
    end = min(job.end.timestamp(), now) if job.end is not None else now
    start = max(start, end - MAX_PANEL_SECONDS)
    live = job.end is None or job.end.timestamp() >= now
    step = panel_step(end - start, settings.prometheus_panel_points, settings.prometheus_min_step)
    first, last = align(start, end, step, live=live)
    return EfficiencyWindow(start=first, end=last, step=step, running=job.end is None)


def _values(data: Matrix) -> list[list[float]]:
    """Each series' finite values (series without any left out)."""
    out = []
    for series in data.result:
        values = [float(text) for _, text in series.values]
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            out.append(finite)
    return out


def _none(why: Why, reason: str | None) -> EfficiencyFigure:
    return EfficiencyFigure(why=why, reason=reason)


def _measured(source: catalog.Source, promql: str, ratio: float) -> EfficiencyFigure:
    return EfficiencyFigure(value=round(ratio, 4), source="prometheus", exporter=source.exporter,
                  metric=source.series, query=promql)  # fmt: skip


_ENDS = ("Available when the job ends: Slurm's accounting fills it as steps end, and "
         "no per-job exporter (cgroup_exporter) is in Prometheus here.")  # fmt: skip


def _sacct_cpu(base: Efficiency, running: bool) -> EfficiencyFigure:
    if running:
        return _none("job_running", _ENDS)
    if base.cpu_efficiency is None:
        return _none("not_recorded", "Accounting has no CPU time or elapsed time for this job.")
    return EfficiencyFigure(
        value=base.cpu_efficiency, source="sacct", metric="TotalCPU/(Elapsed*AllocCPUS)"
    )


def _sacct_memory(base: Efficiency, running: bool) -> EfficiencyFigure:
    if running:
        return _none("job_running", _ENDS)
    if base.memory_efficiency is None:
        return _none("not_recorded", "Accounting has no peak memory (MaxRSS) or request.")
    return EfficiencyFigure(value=base.memory_efficiency, source="sacct", metric="MaxRSS/ReqMem")


_NO_STEPS = ("No reading yet: the job has no running step that Slurm's sstat can measure "
             "(it has just started), and no per-job exporter is in Prometheus here.")  # fmt: skip


def _sstat_cpu(
    base: Efficiency, job: JobWindow, usage: RunningUsage, now: float
) -> EfficiencyFigure:
    """CPU time so far over allocated CPUs x elapsed so far."""
    if not usage.steps:
        return _none("no_steps", _NO_STEPS)
    elapsed = now - job.start.timestamp() if job.start is not None else 0.0
    if elapsed <= 0 or not base.cpus:
        return _none("not_recorded", "Slurm has no allocated CPUs or start time for this job.")
    ratio = usage.cpu_time_seconds / (elapsed * base.cpus)
    return EfficiencyFigure(value=round(ratio, 4), source="sstat",
                            metric="sum(AveCPU*NTasks)/(elapsed*AllocCPUS)")  # fmt: skip


def _sstat_memory(base: Efficiency, usage: RunningUsage) -> EfficiencyFigure:
    """Peak step RSS so far over the memory asked for."""
    if not usage.steps:
        return _none("no_steps", _NO_STEPS)
    if usage.max_rss_mb is None or not base.memory_requested_mb:
        return _none("not_recorded", "Slurm has no peak memory (MaxRSS) or request yet.")
    ratio = usage.max_rss_mb / base.memory_requested_mb
    return EfficiencyFigure(value=round(ratio, 4), source="sstat", metric="MaxRSS/ReqMem")
