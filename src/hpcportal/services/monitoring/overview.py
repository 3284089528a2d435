"""What an admin sees of monitoring at a glance (``/admin/monitoring`` and
``GET /api/v1/monitoring/overview``): Prometheus' health, what it scrapes and how each
scrape went, the alerts that fire, and the jobs whose owners were told their GPUs sat
idle.

Everything is read through the same ``PrometheusClient`` as the proxy API. Each part
fails on its own: Prometheus down (or not configured) leaves ``error`` saying why and
empty lists, and the idle-GPU list (the portal's own database) is still shown.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel

from hpcportal.errors import PortalError
from hpcportal.prometheus.models import Health
from hpcportal.services.monitoring.idle_gpu import IdleGpuJob
from hpcportal.services.monitoring.service import MonitoringService


class TargetRow(BaseModel):
    pool: str
    instance: str
    url: str
    health: str
    last_scrape: datetime | None
    scrape_seconds: float
    last_error: str


class AlertRow(BaseModel):
    name: str
    severity: str | None
    summary: str | None
    labels: dict[str, str]
    active_at: datetime | None
    value: str


class Overview(BaseModel):
    #: Where Prometheus is (without a password); None: monitoring is off.
    prometheus: str | None
    health: Health | None
    #: Why Prometheus' figures are missing (not configured, unreachable, unreadable).
    error: str | None
    targets: list[TargetRow]
    #: Targets by health: ``{"up": 9, "down": 1}``.
    target_health: dict[str, int]
    firing: list[AlertRow]
    pending: int
    idle_gpus: list[IdleGpuJob]


async def overview(monitoring: MonitoringService, idle_gpus: list[IdleGpuJob]) -> Overview:
    client = monitoring.client
    empty = Overview(
        prometheus=None, health=None, error=None, targets=[], target_health={}, firing=[],
        pending=0, idle_gpus=idle_gpus,
    )  # fmt: skip
    if client is None:
        return empty.model_copy(update={
            "error": "Monitoring is off: no Prometheus is configured (prometheus_url is unset)."
        })  # fmt: skip
    where = client.where
    try:
        health, targets, alerts = await asyncio.gather(
            client.health(), client.targets("active"), client.alerts()
        )
    except PortalError as exc:
        return empty.model_copy(update={"prometheus": where, "error": exc.message})
    rows = sorted(
        (
            TargetRow(
                pool=t.scrape_pool,
                instance=t.labels.get("instance", t.scrape_url),
                url=t.scrape_url,
                health=t.health,
                last_scrape=t.last_scrape if t.last_scrape.year > 1 else None,
                scrape_seconds=t.last_scrape_duration,
                last_error=t.last_error,
            )
            for t in targets.data.active_targets
        ),
        key=lambda r: (r.health == "up", r.pool, r.instance),
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.health] = counts.get(row.health, 0) + 1
    firing = [
        AlertRow(
            name=a.labels.get("alertname", "?"),
            severity=a.labels.get("severity"),
            summary=a.annotations.get("summary") or a.annotations.get("description"),
            labels={k: v for k, v in a.labels.items() if k != "alertname"},
            active_at=a.active_at,
            value=a.value,
        )
        for a in alerts.data.alerts
        if a.state == "firing"
    ]
    firing.sort(key=lambda a: (a.name, sorted(a.labels.items())))
    pending = sum(1 for a in alerts.data.alerts if a.state == "pending")
    return Overview(
        prometheus=where, health=health, error=None, targets=rows, target_health=counts,
        firing=firing, pending=pending, idle_gpus=idle_gpus,
    )  # fmt: skip
