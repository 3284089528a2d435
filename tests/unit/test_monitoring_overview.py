"""The admin's monitoring overview (``services.monitoring.overview``) on answers recorded
from a real Prometheus 2.42 (``tests/fixtures/prometheus/``): targets with their health
(a down target first, with its error), firing alerts, and Prometheus down or not
configured saying why while the idle-GPU list is still there."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from hpcportal.config import Settings
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.services.monitoring.idle_gpu import IdleGpuJob
from hpcportal.services.monitoring.overview import overview
from hpcportal.services.monitoring.service import MonitoringService

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"
IDLE = [IdleGpuJob(job_id="77", user="alice", job_name="train", nodes="gpu001", gpus=1,
                   peak_percent=0.4, threshold_percent=5.0, minutes=30.0,
                   nudged_at=datetime(2026, 12, 3, 7, 0, tzinfo=UTC),
                   link="/jobs/77#graphs-title")]  # fmt: skip


def monitoring(handler: httpx.MockTransport | None) -> MonitoringService:
    settings = Settings(prometheus_url="http://admin:secret@prom.test")
    if handler is None:
        return MonitoringService(settings, None)
    client = PrometheusClient("http://admin:secret@prom.test", 2.0, transport=handler)
    return MonitoringService(settings, client)


def recorded() -> httpx.MockTransport:
    targets = json.loads((FIXTURES / "targets.json").read_bytes())
    node002 = targets["data"]["activeTargets"][2]
    node002["health"], node002["lastError"] = "down", "connection refused"
    answers = {
        "/-/healthy": (FIXTURES / "healthy.txt").read_bytes(),
        "/-/ready": b"Prometheus Server is Ready.\n",
        "/api/v1/status/buildinfo": (FIXTURES / "buildinfo.json").read_bytes(),
        "/api/v1/targets": json.dumps(targets).encode(),
        "/api/v1/alerts": (FIXTURES / "alerts.json").read_bytes(),
    }

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answers[request.url.path])

    return httpx.MockTransport(handle)


def test_targets_alerts_and_health_from_recorded_answers() -> None:
    view = asyncio.run(overview(monitoring(recorded()), IDLE))
    assert view.error is None and view.prometheus == "http://admin:***@prom.test"  # no password
    assert view.health is not None and view.health.healthy and view.health.ready
    assert view.health.version is not None and view.health.version.startswith("2.")
    assert [(t.instance, t.health) for t in view.targets] == [
        ("node002:9100", "down"), ("gpu001:9400", "up"), ("node001:9100", "up")]  # fmt: skip
    assert view.targets[0].last_error == "connection refused"
    assert view.target_health == {"up": 2, "down": 1}
    assert [(a.name, a.labels["instance"], a.severity) for a in view.firing] == [
        ("NodeUp", "node001:9100", "info"), ("NodeUp", "node002:9100", "info")]  # fmt: skip
    assert view.firing[0].summary == "node001:9100 is scraped"
    assert "alertname" not in view.firing[0].labels and view.pending == 0
    assert view.idle_gpus == IDLE


def test_prometheus_down_says_why_and_keeps_the_idle_list() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    view = asyncio.run(overview(monitoring(httpx.MockTransport(refuse)), IDLE))
    assert view.error is not None and "cannot be reached" in view.error
    assert "prom.test" in view.error and "secret" not in view.error
    assert view.targets == [] and view.firing == [] and view.health is None
    assert view.idle_gpus == IDLE
    off = asyncio.run(overview(monitoring(None), []))
    assert off.error is not None and "prometheus_url is unset" in off.error
    assert off.prometheus is None
