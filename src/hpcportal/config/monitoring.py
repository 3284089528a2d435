"""Monitoring through Prometheus: the server, the panels, idle GPUs and site metrics.

``prometheus_url`` and how the portal queries it: node scratch for the disk alerts, the
monitoring pages' panels and raw PromQL (bounded in points, samples and time, cached),
the GPU exporter's job label, the leader's idle-GPU check, and a site's own metric
sources (``MetricSource``). Used by ``services/monitoring/`` (``service.py``,
``history.py``, ``catalog.py``, ``idle_gpu.py``), ``services/disk_alerts/readers.py``
and the reports' Prometheus queries (``services/reports/kinds/``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class MetricSource(BaseModel):
    """A site's own way to read a logical metric (``prometheus_metric_sources``): used
    when Prometheus has ``series``, before the built-in exporters. In the queries,
    ``$node`` is the label matcher of the node(s), ``$job`` that of a job's GPUs
    (``hpc_job="123"``) and ``$window`` the rate window (``[1m]``)."""

    model_config = {"extra": "forbid"}

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    series: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    node_query: str = Field(min_length=1)
    job_query: str | None = None
    exporter: str = "site"
    title: str | None = None
    unit: str | None = None


class MonitoringSettings(BaseModel):
    """Prometheus: where it is and how the portal asks it."""

    # Prometheus (services/monitoring/, services/disk_alerts/readers.py)
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL (e.g. http://prometheus:9090). When set, node "
        "scratch usage comes from one instant query (prometheus_scratch_query) instead "
        "of running disk_scratch_probe per node.",
    )
    prometheus_scratch_query: str = Field(
        default='{__name__=~"node_filesystem_(size|free|avail)_bytes",mountpoint="/scratch"}',
        description="PromQL for node scratch: node_exporter's size/free/avail series by "
        "node (free may be left out), or an expression whose value is the percent used.",
    )
    prometheus_node_label: str = Field(
        default="instance",
        description="Label naming the node in the query's answer (a ':port' is removed).",
    )
    prometheus_timeout: float = Field(
        default=10.0, gt=0, description="Seconds before the Prometheus query is given up."
    )
    prometheus_user_promql: bool = Field(
        default=False,
        description="Let every logged-in user send raw PromQL through /api/v1/prometheus "
        "(query, query_range, labels, label values, series). Off: only admins; users get "
        "the named panels of their own jobs and of nodes.",
    )
    prometheus_max_points: int = Field(
        default=11000, gt=1, le=11000,
        description="Most points (steps) per series a range query may ask for; more is "
        "a 422 asking for a larger step (Prometheus' own limit is 11,000).",
    )  # fmt: skip
    prometheus_max_samples: int = Field(
        default=500_000, gt=0,
        description="Most samples (points over all series) one answer may carry back "
        "through the portal; more is a 422 asking for a narrower query.",
    )  # fmt: skip
    prometheus_panel_points: int = Field(
        default=240, ge=10, le=2000,
        description="Points per series a panel aims at: its step is its window divided "
        "by this, rounded up to a whole multiple of prometheus_min_step.",
    )  # fmt: skip
    prometheus_min_step: float = Field(
        default=15.0, gt=0, description="Smallest panel step in seconds (about the "
        "scrape interval: a finer step repeats samples).",
    )  # fmt: skip
    prometheus_cache_seconds: float = Field(
        default=15.0, ge=0,
        description="How long a panel's range answer (query and step-aligned window) is "
        "shared by everyone asking the same; concurrent askers always share one request.",
    )  # fmt: skip
    prometheus_catalog_seconds: float = Field(
        default=300.0, gt=0,
        description="How long the list of series names Prometheus has (which exporters "
        "exist, for the metric catalog) is reused before it is asked again.",
    )  # fmt: skip
    prometheus_gpu_job_label: str = Field(
        default="hpc_job",
        description="Label by which the GPU exporter names the Slurm job using a GPU "
        "(DCGM exporter's HPC job mapping writes hpc_job).",
    )
    gpu_idle_check_seconds: float = Field(
        default=300.0, ge=0, le=86400,
        description="The leader checks running GPU jobs for idle GPUs this often "
        "(0: never; needs prometheus_url and a GPU exporter naming the job).",
    )  # fmt: skip
    gpu_idle_threshold_percent: float = Field(
        default=5.0, gt=0, le=100,
        description="A job's GPUs are idle while their utilisation stays below this.",
    )  # fmt: skip
    gpu_idle_minutes: float = Field(
        default=30.0, gt=0, le=10080,
        description="How long a running job's GPUs must stay idle before its owner is "
        "told, once per job.",
    )  # fmt: skip
    prometheus_metric_sources: list[MetricSource] = Field(
        default_factory=list,
        description="Site additions to the metric catalog, tried before the built-in "
        "exporters: [[prometheus_metric_sources]] metric, series, node_query, job_query, "
        "exporter, title, unit ($node, $job and $window stand for the matchers and the "
        "rate window).",
    )
