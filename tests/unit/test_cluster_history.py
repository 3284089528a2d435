"""Cluster history panels (``services.monitoring.history``): the named queries over the
portal's own gauges, their step-aligned windows, series names and sharing, on a
Prometheus answer in Prometheus' own format. (The integration test
``test_monitoring_console.py`` compares the panels with a real Prometheus.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from hpcportal.config import Settings
from hpcportal.errors import NotFound
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.services.monitoring import history
from hpcportal.services.monitoring.service import MonitoringService

NOW = 1_764_000_007.5  # 15 s steps: the hour's window ends at 1_764_000_000


def matrix(series: list[tuple[dict[str, str], list[tuple[float, str]]]]) -> bytes:
    result = [{"metric": m, "values": [[t, v] for t, v in values]} for m, values in series]
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


def service(names: list[str], answer: bytes) -> tuple[MonitoringService, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await asyncio.sleep(0.01)
        if request.url.path == "/api/v1/label/__name__/values":
            return httpx.Response(200, json={"status": "success", "data": names})
        return httpx.Response(200, content=answer)

    settings = Settings(prometheus_url="http://prom.test", prometheus_min_step=15.0)
    client = PrometheusClient("http://prom.test", 2.0, transport=httpx.MockTransport(handle))
    return MonitoringService(settings, client, clock=lambda: NOW), seen


END = 1_764_000_000.0
CPUS = matrix([
    ({"partition": "gpu", "kind": "allocated"}, [(END - 30, "4"), (END, "8")]),
    ({"partition": "gpu", "kind": "total"}, [(END - 30, "16"), (END - 15, "16"), (END, "16")]),
    ({"partition": "normal", "kind": "total"}, [(END, "64")]),
])  # fmt: skip


def test_the_cpu_history_asks_one_named_query_on_whole_steps() -> None:
    monitoring, seen = service(["hpcportal_slurm_partition_cpus", "up"], CPUS)

    async def main() -> list[Any]:
        panel = history.panel_named("cpus")
        return list(await asyncio.gather(*(history.history(monitoring, panel, "hour")
                                           for _ in range(50))))  # fmt: skip

    panels = asyncio.run(main())
    assert len({p.model_dump_json() for p in panels}) == 1
    panel = panels[0]
    assert panel.available and panel.exporter == "hpcportal"
    assert panel.step == 15.0 and panel.end == END and panel.start == END - 3600
    assert len(panel.timestamps) == 241
    assert [s.name for s in panel.series] == ["gpu allocated", "gpu total", "normal total"]
    allocated = panel.series[0].values
    assert allocated[-3:] == [4.0, None, 8.0] and allocated[:-3] == [None] * 238
    ranges = [r for r in seen if r.url.path == "/api/v1/query_range"]
    assert len(ranges) == 1  # fifty viewers, one query
    params = ranges[0].url.params
    assert params["query"] == "max by (partition, kind) (hpcportal_slurm_partition_cpus)"
    assert (float(params["start"]), float(params["end"]), float(params["step"])) == (
        END - 3600, END, 15.0)  # fmt: skip


def test_each_range_has_its_step_and_jobs_are_counted_over_replicas() -> None:
    monitoring, seen = service(["hpcportal_slurm_jobs"], matrix([
        ({"state": "running"}, [(END, "3")]), ({"state": "queued"}, [(END, "1")])]))  # fmt: skip
    panel = asyncio.run(history.history(monitoring, history.panel_named("jobs"), "month"))
    assert [s.name for s in panel.series] == ["queued", "running"]
    assert panel.step == 10800.0  # 30 days / 240 points, on whole 15 s
    assert panel.start % panel.step == 0 and panel.end % panel.step == 0
    query = next(r for r in seen if r.url.path == "/api/v1/query_range").url.params["query"]
    assert query == "sum by (state) (max by (partition, account, state) (hpcportal_slurm_jobs))"
    week = asyncio.run(history.history(monitoring, history.panel_named("jobs"), "week"))
    assert week.step == 2520.0


def test_a_prometheus_that_does_not_scrape_the_portal_says_so() -> None:
    monitoring, seen = service(["up", "node_load1"], CPUS)
    panel = asyncio.run(history.history(monitoring, history.panel_named("gpus"), "day"))
    assert not panel.available and panel.series == []
    assert panel.reason is not None and "hpcportal_slurm_partition_gpus" in panel.reason
    assert "scrape" in panel.reason
    assert not [r for r in seen if r.url.path == "/api/v1/query_range"]
    with pytest.raises(NotFound, match="the panels are cpus, gpus, jobs"):
        history.panel_named("up")
