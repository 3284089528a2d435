"""The metric catalog (which exporter gives each logical metric, from the series names
a real Prometheus had), shared answers (single flight, step-aligned windows) and the
service's limits, on recorded answers (``tests/fixtures/prometheus/``)."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcportal.config import MetricSource, Settings
from hpcportal.errors import Forbidden, InvalidInput, NotFound, PrometheusUnavailable
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.services.identity import Principal
from hpcportal.services.monitoring import catalog
from hpcportal.services.monitoring.cache import SharedAnswers, align, panel_step
from hpcportal.services.monitoring.service import JobWindow, MonitoringService

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"
RANGE = json.loads((FIXTURES / "query_range.json").read_bytes())["data"]["result"]
#: The recorded range answer's last sample, as "now".
NOW = max(t for series in RANGE for t, _ in series["values"]) + 0.2
RECORDED_NAMES = set(json.loads((FIXTURES / "label_values.json").read_bytes())["data"])
ALICE = Principal(username="alice", uid=1001, gid=1001, groups=("alice",), role="user")
CAROL = Principal(username="carol", uid=1003, gid=1003, groups=("hpc-admins",), role="admin")


# --- the catalog ---------------------------------------------------------------------------


def test_node_exporter_and_dcgm_are_detected_from_real_series_names() -> None:
    found = catalog.resolve(catalog.build(), RECORDED_NAMES)
    exporters = {name: r.source.exporter if r.source else None for name, r in found.items()}
    assert exporters == {
        "cpu_busy": "node_exporter", "memory_used": "node_exporter", "load": "node_exporter",
        "network_rx": "node_exporter", "network_tx": "node_exporter",
        "disk_read": "node_exporter", "disk_write": "node_exporter",
        "gpu_util": "dcgm_exporter", "gpu_memory": "dcgm_exporter",
        "gpu_temp": "dcgm_exporter", "gpu_power": "dcgm_exporter",
        # Slurm's own OpenMetrics (25.11+): not in this recording.
        "cpus_alloc": None, "memory_alloc": None, "gpus_alloc": None,
    }  # fmt: skip


def test_nvidia_gpu_exporter_when_there_is_no_dcgm_and_a_reason_when_neither() -> None:
    names = {n for n in RECORDED_NAMES if not n.startswith("DCGM_")}
    found = catalog.resolve(catalog.build(), names | {"nvidia_smi_utilization_gpu_ratio"})
    util = found["gpu_util"]
    assert util.source is not None and util.source.exporter == "nvidia_gpu_exporter"
    assert util.source.job_query is None  # it cannot say which job uses a GPU
    temp = found["gpu_temp"]
    assert temp.source is None
    assert temp.reason is not None and temp.reason.startswith("No exporter for this")
    assert "DCGM_FI_DEV_GPU_TEMP" in temp.reason and "nvidia_smi_temperature_gpu" in temp.reason


def test_site_sources_come_first_and_may_add_metrics() -> None:
    site = [
        MetricSource(metric="gpu_util", series="site_gpu_busy", exporter="site-gpu",
                     node_query="site_gpu_busy{$node}", job_query="site_gpu_busy{$job}"),
        MetricSource(metric="ib_rx", series="node_infiniband_port_data_received_bytes_total",
                     node_query="rate(node_infiniband_port_data_received_bytes_total{$node}"
                     "[$window])", title="InfiniBand received", unit="bytes/s"),
    ]  # fmt: skip
    metrics = catalog.build(site)
    found = catalog.resolve(metrics, RECORDED_NAMES | {"site_gpu_busy"})
    assert found["gpu_util"].source is not None
    assert found["gpu_util"].source.exporter == "site-gpu"
    assert catalog.resolve(metrics, RECORDED_NAMES)["gpu_util"].source.exporter == (  # type: ignore[union-attr]
        "dcgm_exporter"
    )
    assert found["ib_rx"].metric.title == "InfiniBand received"
    assert found["ib_rx"].source is None  # this Prometheus has no InfiniBand series


def test_matchers_and_rendering() -> None:
    matcher = catalog.node_matcher("instance", ["node002", "node001", "node001"])
    assert matcher == 'instance=~"(node001|node002)(:[0-9]+)?"'
    assert catalog.node_matcher("instance", ["n1.dc"]) == 'instance=~"(n1\\\\.dc)(:[0-9]+)?"'
    with pytest.raises(ValueError, match="not a node name"):
        catalog.node_matcher("instance", ['x"}) or vector(1'])
    query = catalog.render("rate(x{$node}[$window])", node=matcher, window="60s")
    assert query == 'rate(x{instance=~"(node001|node002)(:[0-9]+)?"}[60s])'
    assert catalog.job_matcher("hpc_job", 42) == 'hpc_job="42"'


# --- shared answers -----------------------------------------------------------------------


def test_fifty_concurrent_askers_cost_one_request() -> None:
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "answer"

    async def main() -> list[str]:
        cache: SharedAnswers[str] = SharedAnswers(ttl=15)
        answers = await asyncio.gather(*(cache.get("k", fetch) for _ in range(50)))
        again = await cache.get("k", fetch)
        assert (cache.fetched, cache.shared) == (1, 50)
        return [*answers, again]

    assert asyncio.run(main()) == ["answer"] * 51
    assert calls == 1


def test_answers_expire_and_failures_are_not_kept() -> None:
    now = [100.0]
    calls: list[str] = []

    async def good() -> str:
        calls.append("good")
        return "ok"

    async def bad() -> str:
        calls.append("bad")
        await asyncio.sleep(0.01)
        raise PrometheusUnavailable("down")

    async def main() -> None:
        cache: SharedAnswers[str] = SharedAnswers(ttl=15, clock=lambda: now[0])
        results = await asyncio.gather(*(cache.get("b", bad) for _ in range(3)),
                                       return_exceptions=True)  # fmt: skip
        assert all(isinstance(r, PrometheusUnavailable) for r in results)
        assert await cache.get("b", good) == "ok"  # the failure was not kept
        await cache.get("b", good)
        now[0] += 15.0
        await cache.get("b", good)

    asyncio.run(main())
    assert calls == ["bad", "good", "good"]


def test_windows_align_to_the_step() -> None:
    assert align(1000.0, 1999.0, 60, live=True) == (960.0, 1980.0)
    assert align(1000.0, 1999.0, 60, live=False) == (960.0, 2040.0)
    # Two viewers a few seconds apart ask the same window.
    assert align(100_007 - 3600, 100_007, 15, live=True) == align(100_011 - 3600, 100_011, 15,
                                                                  live=True)  # fmt: skip
    assert panel_step(3600, 240, 15) == 15
    assert panel_step(86400, 240, 15) == 360
    assert panel_step(7 * 86400, 240, 15) == 2520


# --- the service -------------------------------------------------------------------------


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def service(**overrides: object) -> tuple[MonitoringService, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    answers = {"/api/v1/label/__name__/values": recorded("label_values.json"),
               "/api/v1/query_range": recorded("query_range.json"),
               "/api/v1/query": recorded("query_vector.json")}  # fmt: skip

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await asyncio.sleep(0.02)
        return httpx.Response(200, content=answers[request.url.path])

    values: dict[str, Any] = {"prometheus_url": "http://prom.test", "prometheus_min_step": 1.0}
    settings = Settings(**{**values, **overrides})
    client = PrometheusClient("http://prom.test", 2.0, transport=httpx.MockTransport(handle))
    return MonitoringService(settings, client, clock=lambda: NOW), seen


def test_fifty_viewers_of_a_job_panel_cost_one_range_query() -> None:
    monitoring, seen = service()
    job = JobWindow(4242, ["node001", "node002"], datetime.fromtimestamp(NOW - 13, UTC), None)

    async def main() -> None:
        panels = await asyncio.gather(*(monitoring.job_panel(job, "load", None)
                                        for _ in range(50)))  # fmt: skip
        assert len({p.model_dump_json() for p in panels}) == 1
        panel = panels[0]
        assert panel.available and panel.exporter == "node_exporter"
        assert [s.name for s in panel.series] == ["node001", "node002"]
        assert (panel.start, panel.end) == (math.floor(NOW - 13), math.floor(NOW))  # aligned
        assert len(panel.timestamps) == 14
        # Each recorded sample lands on its step, with its value.
        for series in panel.series:
            raw = next(r for r in RANGE if r["metric"]["instance"].startswith(series.name))
            assert [v for v in series.values if v is not None] == [float(v) for _, v in
                                                                    raw["values"]]  # fmt: skip

    asyncio.run(main())
    paths = [r.url.path for r in seen]
    assert paths.count("/api/v1/query_range") == 1
    assert paths.count("/api/v1/label/__name__/values") == 1
    query = next(r for r in seen if r.url.path.endswith("query_range")).url.params["query"]
    assert query == 'max by (instance) (node_load1{instance=~"(node001|node002)(:[0-9]+)?"})'


def test_a_jobs_gpu_panel_asks_by_the_job_label() -> None:
    monitoring, seen = service()
    job = JobWindow(4242, ["gpu001"], datetime.fromtimestamp(NOW - 13, UTC), None)
    asyncio.run(monitoring.job_panel(job, "gpu_util", None))
    query = next(r for r in seen if r.url.path.endswith("query_range")).url.params["query"]
    assert query == 'max by (instance, gpu) (DCGM_FI_DEV_GPU_UTIL{hpc_job="4242"})'


def test_limits_and_permissions() -> None:
    monitoring, seen = service(prometheus_max_points=100)
    with pytest.raises(Forbidden, match="prometheus_user_promql"):
        asyncio.run(monitoring.query(ALICE, "up", None))
    with pytest.raises(InvalidInput, match="3601 points per series; the most is 100"):
        asyncio.run(monitoring.query_range(CAROL, "up", 0, 3600, 1))
    with pytest.raises(InvalidInput, match="step must be a positive"):
        asyncio.run(monitoring.query_range(CAROL, "up", 0, 3600, 0))
    assert not [r for r in seen if r.url.path.endswith("query_range")]  # refused before asking
    with pytest.raises(NotFound, match="No panel named 'nope'"):
        asyncio.run(monitoring.node_panel("node001", "nope", 3600, None))
    small, _ = service(prometheus_max_samples=5)
    with pytest.raises(InvalidInput, match="the most the portal passes on is 5"):
        asyncio.run(small.query_range(CAROL, "node_load1", 0, 60, 1))
    allowed, _ = service(prometheus_user_promql=True)
    assert asyncio.run(allowed.query(ALICE, "node_load1", None)).status == "success"


def test_no_prometheus_configured_is_a_404() -> None:
    monitoring = MonitoringService(Settings(), None)
    with pytest.raises(NotFound, match="prometheus_url is unset"):
        asyncio.run(monitoring.panels())
