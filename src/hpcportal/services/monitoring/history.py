"""Cluster history: the portal's own Slurm gauges as Prometheus kept them.

The portal's ``/metrics`` exports what the snapshot holds (``services.snapshot_metrics``:
CPUs and GPUs per partition, total and allocated; jobs by partition, account and
state). A Prometheus that scrapes the portal keeps their history, so these panels cost
Slurm nothing: they are a small set of named queries (nobody sends PromQL here),
answered through ``MonitoringService.shared_range`` (the window aligned to its step,
one request per query and window however many people watch).

Every replica exports the same figures, so the queries take ``max`` over the replicas
(the ``instance`` and ``job`` labels) before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from hpcportal.errors import NotFound
from hpcportal.services.monitoring.cache import align, panel_step
from hpcportal.services.monitoring.service import (
    MonitoringService,
    PanelData,
    PanelSeries,
    grid,
)

HistoryRange = Literal["hour", "day", "week", "month"]
RANGES: tuple[HistoryRange, ...] = get_args(HistoryRange)
RANGE_SECONDS: dict[HistoryRange, float] = {
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,
}


@dataclass(frozen=True, slots=True)
class HistoryPanel:
    name: str
    title: str
    unit: str
    #: The gauge that must exist in Prometheus (else: not scraped).
    series: str
    query: str
    #: The labels naming one series, joined by a space (``gpu allocated``).
    by: tuple[str, ...]
    #: What Slurm's ``PrivateData`` must not hide from the caller.
    needs: Literal["partitions", "jobs"]


PANELS: tuple[HistoryPanel, ...] = (
    HistoryPanel(
        "cpus", "CPUs by partition", "cpus", "hpcportal_slurm_partition_cpus",
        "max by (partition, kind) (hpcportal_slurm_partition_cpus)",
        ("partition", "kind"), "partitions",
    ),
    HistoryPanel(
        "gpus", "GPUs by partition", "gpus", "hpcportal_slurm_partition_gpus",
        "max by (partition, kind) (hpcportal_slurm_partition_gpus)",
        ("partition", "kind"), "partitions",
    ),
    HistoryPanel(
        "jobs", "Jobs by state", "jobs", "hpcportal_slurm_jobs",
        "sum by (state) (max by (partition, account, state) (hpcportal_slurm_jobs))",
        ("state",), "jobs",
    ),
)  # fmt: skip
BY_NAME = {p.name: p for p in PANELS}


def panel_named(name: str) -> HistoryPanel:
    found = BY_NAME.get(name)
    if found is None:
        names = ", ".join(BY_NAME)
        raise NotFound(f"No history panel named {name!r}; the panels are {names}.")
    return found


async def history(
    monitoring: MonitoringService, panel: HistoryPanel, span: HistoryRange
) -> PanelData:
    """``panel`` over the last ``span``, on whole steps (shared by everyone asking)."""
    settings = monitoring.settings
    now = monitoring.clock()
    seconds = RANGE_SECONDS[span]
    step = panel_step(seconds, settings.prometheus_panel_points, settings.prometheus_min_step)
    first, last = align(now - seconds, now, step, live=True)
    if panel.series not in await monitoring.series_names():
        return PanelData(
            panel=panel.name, title=panel.title, unit=panel.unit, available=False,
            reason=f"Prometheus has no {panel.series}: it does not scrape this portal's "
            "/metrics (add the portal as a scrape target).",
            start=first, end=last, step=step, timestamps=[], series=[],
        )  # fmt: skip
    answer = await monitoring.shared_range(panel.query, first, last, step)
    timestamps, series = grid(answer.data, first, last, step, settings.prometheus_node_label)
    named = [
        PanelSeries(
            name=" ".join(s.labels.get(label, "?") for label in panel.by),
            labels=s.labels,
            values=s.values,
        )
        for s in series
    ]
    named.sort(key=lambda s: s.name)
    return PanelData(
        panel=panel.name, title=panel.title, unit=panel.unit, available=True,
        exporter="hpcportal", query=panel.query, start=first, end=last, step=step,
        timestamps=timestamps, series=named,
    )  # fmt: skip
