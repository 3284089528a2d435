"""The Prometheus boundary on answers recorded from a real Prometheus 2.42
(``tests/fixtures/prometheus/``, ``record.py``): strict decoding into the typed models,
and every failure as the portal's typed error."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from hpcportal.errors import PrometheusBadQuery, PrometheusUnavailable, PrometheusUnreadable
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.prometheus.models import Matrix, Scalar, String, Vector

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def replaying(
    answers: dict[str, tuple[int, bytes]], seen: list[httpx.Request] | None = None
) -> PrometheusClient:
    """A client whose transport answers each API path with recorded bytes."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status, body = answers[request.url.path]
        return httpx.Response(status, content=body)

    return PrometheusClient("http://prom.test:9090", 2.0, transport=httpx.MockTransport(handle))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_instant_answers_of_each_result_type() -> None:
    kinds = [("query_vector.json", Vector), ("query_scalar.json", Scalar),
             ("query_string.json", String), ("query_matrix_instant.json", Matrix)]  # fmt: skip
    for name, kind in kinds:
        client = replaying({"/api/v1/query": (200, recorded(name))})
        answer = asyncio.run(client.query("x"))
        assert isinstance(answer.data, kind), name
    vector = asyncio.run(
        replaying({"/api/v1/query": (200, recorded("query_vector.json"))}).query("node_load1")
    ).data
    assert isinstance(vector, Vector)
    raw = json.loads(recorded("query_vector.json"))["data"]["result"]
    assert [s.metric for s in vector.result] == [r["metric"] for r in raw]
    assert [s.value[1] for s in vector.result] == [r["value"][1] for r in raw]
    assert {s.metric["instance"] for s in vector.result} == {"node001:9100", "node002:9100"}


def test_query_sends_the_time_and_prometheus_own_timeout() -> None:
    seen: list[httpx.Request] = []
    client = replaying({"/api/v1/query": (200, recorded("query_vector.json"))}, seen)
    asyncio.run(client.query("up", 1796278640.5))
    params = seen[0].url.params
    assert params["query"] == "up" and params["time"] == "1796278640.5"
    assert params["timeout"] == "2s"
    assert client.requests["query"] == 1


def test_range_answer_reencodes_as_prometheus_wrote_it() -> None:
    client = replaying({"/api/v1/query_range": (200, recorded("query_range.json"))})
    answer = asyncio.run(client.query_range("node_load1", 1.0, 4.0, 1.0))
    assert answer.data.points() == sum(
        len(s["values"]) for s in json.loads(recorded("query_range.json"))["data"]["result"]
    )
    again = json.loads(answer.model_dump_json(by_alias=True))
    original = json.loads(recorded("query_range.json"))
    assert again["data"]["resultType"] == "matrix"
    assert again["data"]["result"] == [
        {"metric": s["metric"], "values": [[float(t), v] for t, v in s["values"]]}
        for s in original["data"]["result"]
    ]


def test_metadata_endpoints() -> None:
    client = replaying({
        "/api/v1/labels": (200, recorded("labels.json")),
        "/api/v1/label/__name__/values": (200, recorded("label_values.json")),
        "/api/v1/series": (200, recorded("series.json")),
        "/api/v1/targets": (200, recorded("targets.json")),
        "/api/v1/rules": (200, recorded("rules.json")),
        "/api/v1/alerts": (200, recorded("alerts.json")),
        "/api/v1/status/config": (200, recorded("status_config.json")),
        "/api/v1/status/buildinfo": (200, recorded("buildinfo.json")),
        "/-/healthy": (200, recorded("healthy.txt")),
        "/-/ready": (200, b"Prometheus Server is Ready.\n"),
    })  # fmt: skip

    async def ask() -> None:
        assert "instance" in (await client.labels()).data
        names = (await client.label_values("__name__")).data
        assert "node_load1" in names and "DCGM_FI_DEV_GPU_UTIL" in names
        assert {s["instance"] for s in (await client.series(["node_load1"])).data} == {
            "node001:9100", "node002:9100"}  # fmt: skip
        targets = (await client.targets()).data
        assert {t.labels["instance"] for t in targets.active_targets} == {
            "node001:9100", "node002:9100", "gpu001:9400"}  # fmt: skip
        assert all(t.health == "up" for t in targets.active_targets)
        groups = (await client.rules()).data.groups
        kinds = {r.name: r.type for g in groups for r in g.rules}
        assert kinds == {"node:load1:max": "recording", "NodeUp": "alerting"}
        alerts = (await client.alerts()).data.alerts
        assert {a.labels["instance"] for a in alerts} == {"node001:9100", "node002:9100"}
        assert all(a.state == "firing" for a in alerts)
        assert "scrape_configs" in (await client.config()).data.yaml
        health = await client.health()
        assert health.healthy and health.ready and health.version == "2.42.0+ds"

    asyncio.run(ask())


def test_a_promql_error_is_a_422_with_prometheus_message() -> None:
    client = replaying({"/api/v1/query": (400, recorded("query_error.json"))})
    with pytest.raises(PrometheusBadQuery, match="unclosed left parenthesis") as caught:
        asyncio.run(client.query("sum(node_load1"))
    assert caught.value.status == 422
    client = replaying({"/api/v1/query_range": (400, recorded("query_range_too_many.json"))})
    with pytest.raises(PrometheusBadQuery, match="11,000 points"):
        asyncio.run(client.query_range("node_load1", 0, 3600, 0.1))


def test_a_reshaped_or_foreign_answer_is_unreadable() -> None:
    body = json.loads(recorded("query_vector.json"))
    body["data"]["result"][0]["value"] = ["1796278640", "0.5"]  # time as text: reshaped
    client = replaying({"/api/v1/query": (200, json.dumps(body).encode())})
    with pytest.raises(PrometheusUnreadable, match="cannot read"):
        asyncio.run(client.query("node_load1"))
    missing = json.loads(recorded("targets.json"))
    del missing["data"]["activeTargets"][0]["health"]
    client = replaying({"/api/v1/targets": (200, json.dumps(missing).encode())})
    with pytest.raises(PrometheusUnreadable, match="health"):
        asyncio.run(client.targets())
    client = replaying({"/api/v1/query": (502, b"<html>Bad gateway</html>")})
    with pytest.raises(PrometheusUnreadable, match="HTTP 502") as caught:
        asyncio.run(client.query("up"))
    assert caught.value.status == 502


def test_prometheus_query_timeout_is_a_503() -> None:
    body = b'{"status":"error","errorType":"timeout","error":"query timed out in query execution"}'
    client = replaying({"/api/v1/query": (503, body)})
    with pytest.raises(PrometheusUnavailable, match="timed out") as caught:
        asyncio.run(client.query("up"))
    assert caught.value.status == 503


def test_nobody_listening_is_a_503_naming_where_without_the_password() -> None:
    port = free_port()
    client = PrometheusClient(f"http://scraper:hunter2@127.0.0.1:{port}", 2.0)
    with pytest.raises(PrometheusUnavailable, match="cannot be reached") as caught:
        asyncio.run(client.query("up"))
    assert "hunter2" not in caught.value.message and "scraper:***@127.0.0.1" in caught.value.message


def test_no_answer_in_time_is_a_503() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = PrometheusClient("http://prom.test", 0.5, transport=httpx.MockTransport(hang))
    with pytest.raises(PrometheusUnavailable, match=r"did not answer within 0\.5 s"):
        asyncio.run(client.query("up"))
