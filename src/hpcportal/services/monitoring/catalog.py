"""The metric catalog: logical metrics (CPU busy, memory used, ...) and the exporters'
series that give them.

A metric has sources tried in order: the site's own (``prometheus_metric_sources``),
then node_exporter, NVIDIA's DCGM exporter (``DCGM_FI_DEV_*``),
utkuozdemir/nvidia_gpu_exporter (``nvidia_smi_*``) and Slurm's own OpenMetrics
(``slurm_node_*``, see ``_SLURM``). The first source whose ``series``
Prometheus has is used; a metric none provides is reported as "no exporter for this"
(never an empty chart). Which series exist comes from one ``label/__name__/values``
request, reused for ``prometheus_catalog_seconds``.

Queries are ``string.Template`` text (PromQL has no ``$``): ``$node`` is the matcher
of the node label (``instance=~"(node001|node002)(:[0-9]+)?"``), ``$job`` the matcher of
a job's GPUs (``hpc_job="123"``), ``$window`` the rate window (``1m``). Every query
keeps one series per node (and per GPU), named by ``instance`` (and ``gpu``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from string import Template
from typing import Literal

from hpcportal.config import MetricSource

Scope = Literal["node", "gpu"]


@dataclass(frozen=True, slots=True)
class Source:
    """One exporter's way to a metric. ``job_query`` None: it cannot tell which job
    uses what (node-level figures are then not shown as a job's)."""

    exporter: str
    series: str
    node_query: str
    job_query: str | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    title: str
    unit: str
    scope: Scope
    sources: tuple[Source, ...]


_NODE = "node_exporter"
_DCGM = "dcgm_exporter"
_NVSMI = "nvidia_gpu_exporter"
_GPU_BY = "instance, gpu"

#: Slurm's own OpenMetrics (Slurm 25.11+, ``MetricsType=metrics/openmetrics``):
#: slurmctld answers ``/metrics/nodes``, ``/metrics/partitions``, ``/metrics/jobs``,
#: ``/metrics/scheduler`` and ``/metrics/jobs-users-accts`` on its own port. Only the
#: per-node figures fit this catalog (every metric here is one series per node); their
#: ``node`` label must reach Prometheus as the node label (the dev cluster copies it
#: into ``instance`` with ``metric_relabel_configs``, as a site would). What Slurm
#: allocated on a node is Slurm's to say, so it is the first and only source of the
#: ``*_alloc`` metrics; before 25.11 they are "no exporter for this".
#:
#: The cluster-wide figures (nodes by state, each partition's CPUs and GPUs, jobs by
#: state: ``slurm_nodes_*``, ``slurm_partition_*``, ``slurm_jobs_*``) are also what the
#: portal's own gauges give (``services.snapshot_metrics``: ``hpcportal_slurm_nodes``,
#: ``hpcportal_slurm_partition_cpus``/``_gpus``, ``hpcportal_slurm_jobs``). Those stay
#: preferred: they exist on every release (22.05 up), cost slurmctld nothing per scrape
#: (read from the snapshot the portal already has), carry the portal's states and
#: accounts, and agree with what the portal's pages show at the same moment. Slurm's are
#: the check of them, not a catalog metric.
_SLURM = "slurm_openmetrics"


def _gpu(series: str, node: str, scale: str = "", *, by_job: bool) -> Source:
    exporter = _DCGM if series.startswith("DCGM_") else _NVSMI
    node_q = f"max by ({_GPU_BY}) ({series}{{{node}}}){scale}"
    job_q = f"max by ({_GPU_BY}) ({series}{{$job}}){scale}" if by_job else None
    return Source(exporter, series, node_q, job_q)


BUILTIN: tuple[Metric, ...] = (
    Metric("cpu_busy", "CPU busy", "percent", "node", (
        Source(_NODE, "node_cpu_seconds_total",
               '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle",$node}'
               "[$window])))"),
    )),
    Metric("memory_used", "Memory used", "bytes", "node", (
        Source(_NODE, "node_memory_MemAvailable_bytes",
               "max by (instance) (node_memory_MemTotal_bytes{$node} - "
               "node_memory_MemAvailable_bytes{$node})"),
    )),
    Metric("load", "Load (1 min)", "", "node", (
        Source(_NODE, "node_load1", "max by (instance) (node_load1{$node})"),
    )),
    Metric("network_rx", "Network received", "bytes/s", "node", (
        Source(_NODE, "node_network_receive_bytes_total",
               'sum by (instance) (rate(node_network_receive_bytes_total{device!="lo",$node}'
               "[$window]))"),
    )),
    Metric("network_tx", "Network sent", "bytes/s", "node", (
        Source(_NODE, "node_network_transmit_bytes_total",
               'sum by (instance) (rate(node_network_transmit_bytes_total{device!="lo",$node}'
               "[$window]))"),
    )),
    Metric("disk_read", "Disk read", "bytes/s", "node", (
        Source(_NODE, "node_disk_read_bytes_total",
               "sum by (instance) (rate(node_disk_read_bytes_total{$node}[$window]))"),
    )),
    Metric("disk_write", "Disk written", "bytes/s", "node", (
        Source(_NODE, "node_disk_written_bytes_total",
               "sum by (instance) (rate(node_disk_written_bytes_total{$node}[$window]))"),
    )),
    Metric("cpus_alloc", "CPUs allocated", "cpus", "node", (
        Source(_SLURM, "slurm_node_cpus_alloc",
               "max by (instance) (slurm_node_cpus_alloc{$node})"),
    )),
    Metric("memory_alloc", "Memory allocated", "bytes", "node", (
        Source(_SLURM, "slurm_node_memory_alloc_bytes",
               "max by (instance) (slurm_node_memory_alloc_bytes{$node})"),
    )),
    Metric("gpus_alloc", "GPUs allocated", "gpus", "node", (
        Source(_SLURM, "slurm_node_gpus_alloc",
               "max by (instance) (slurm_node_gpus_alloc{$node})"),
    )),
    Metric("gpu_util", "GPU utilisation", "percent", "gpu", (
        _gpu("DCGM_FI_DEV_GPU_UTIL", "$node", by_job=True),
        _gpu("nvidia_smi_utilization_gpu_ratio", "$node", " * 100", by_job=False),
    )),
    Metric("gpu_memory", "GPU memory used", "bytes", "gpu", (
        _gpu("DCGM_FI_DEV_FB_USED", "$node", " * 1048576", by_job=True),  # MiB
        _gpu("nvidia_smi_memory_used_bytes", "$node", by_job=False),
    )),
    Metric("gpu_temp", "GPU temperature", "celsius", "gpu", (
        _gpu("DCGM_FI_DEV_GPU_TEMP", "$node", by_job=True),
        _gpu("nvidia_smi_temperature_gpu", "$node", by_job=False),
    )),
    Metric("gpu_power", "GPU power", "watts", "gpu", (
        _gpu("DCGM_FI_DEV_POWER_USAGE", "$node", by_job=True),
        _gpu("nvidia_smi_power_draw_watts", "$node", by_job=False),
    )),
)  # fmt: skip


#: The label naming a job in cgroup_exporter's series.
CGROUP_JOB_LABEL = "jobid"
_CGROUP = "cgroup_exporter"
_JOB_LEVEL = 'step="",task=""'

#: Per-job figures for job efficiency (``services.monitoring.job_efficiency``), not
#: panels. CPU and memory per job only come from an exporter that reads each job's
#: cgroup: Princeton jobstats' cgroup_exporter (treydock/cgroup_exporter with
#: ``--collect.fullslurm``) names it by ``jobid``, the job's own cgroup (not its steps')
#: having ``step=""`` and ``task=""``. node_exporter's node-wide figures are never used
#: for a job: on a shared node they count everyone's work. ``$job`` is the exporter's
#: job matcher (``jobid="123"`` here, DCGM's ``hpc_job="123"`` for GPUs).
JOB_FIGURES: tuple[Metric, ...] = (
    Metric("job_cpu_seconds", "CPU time used", "seconds", "node", (
        Source(_CGROUP, "cgroup_cpu_total_seconds", "",
               f"max by (instance) (cgroup_cpu_total_seconds{{$job,{_JOB_LEVEL}}})"),
    )),
    Metric("job_memory_rss", "Memory used (RSS)", "bytes", "node", (
        Source(_CGROUP, "cgroup_memory_rss_bytes", "",
               f"max by (instance) (cgroup_memory_rss_bytes{{$job,{_JOB_LEVEL}}})"),
    )),
    Metric("gpu_memory_share", "GPU memory used, share", "ratio", "gpu", (
        Source(_DCGM, "DCGM_FI_DEV_FB_USED", "",
               f"max by ({_GPU_BY}) (DCGM_FI_DEV_FB_USED{{$job}} / "
               "(DCGM_FI_DEV_FB_USED{$job} + DCGM_FI_DEV_FB_FREE{$job}))"),
    )),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resolved:
    """A metric as this Prometheus can answer it: ``source`` None when no exporter
    provides it."""

    metric: Metric
    source: Source | None

    @property
    def reason(self) -> str | None:
        if self.source is not None:
            return None
        wanted = ", ".join(s.series for s in self.metric.sources) or "no series"
        return f"No exporter for this: Prometheus has none of {wanted}."


def build(site: Sequence[MetricSource] = ()) -> tuple[Metric, ...]:
    """The built-in metrics with the site's sources first (and the site's own metrics
    after them)."""
    extra: dict[str, list[MetricSource]] = {}
    for item in site:
        extra.setdefault(item.metric, []).append(item)
    metrics = []
    for metric in BUILTIN:
        mine = tuple(_source(s) for s in extra.pop(metric.name, []))
        metrics.append(Metric(metric.name, metric.title, metric.unit, metric.scope,
                              mine + metric.sources))  # fmt: skip
    for name, items in extra.items():
        first = items[0]
        scope: Scope = "gpu" if "$job" in (first.job_query or "") else "node"
        metrics.append(Metric(name, first.title or name, first.unit or "", scope,
                              tuple(_source(s) for s in items)))  # fmt: skip
    return tuple(metrics)


def _source(item: MetricSource) -> Source:
    return Source(item.exporter, item.series, item.node_query, item.job_query)


def resolve(metrics: Iterable[Metric], series_names: set[str]) -> dict[str, Resolved]:
    """Each metric with the first source whose series Prometheus has."""
    found = {}
    for metric in metrics:
        source = next((s for s in metric.sources if s.series in series_names), None)
        found[metric.name] = Resolved(metric, source)
    return found


_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def node_matcher(label: str, nodes: Sequence[str]) -> str:
    """``instance=~"(node001|node002)(:[0-9]+)?"``: the nodes, with or without a port."""
    for node in nodes:
        if not _LABEL_VALUE.fullmatch(node):
            raise ValueError(f"{node!r} is not a node name")
    # A PromQL string holds the regex: "\\." there is the regex's literal dot.
    names = "|".join(n.replace(".", "\\\\.") for n in sorted(set(nodes)))
    return f'{label}=~"({names})(:[0-9]+)?"'


def job_matcher(label: str, job_id: int) -> str:
    return f'{label}="{int(job_id)}"'


def render(query: str, *, node: str = "", job: str = "", window: str = "1m") -> str:
    return Template(query).substitute(node=node, job=job, window=window)
