"""Monitoring end to end: a real Prometheus (Debian's, started here on loopback by
``tests/real_prometheus.py``, scraping the real node exporter once per dev-cluster node
name, and the DCGM stand-in for gpu001's GPUs), a real portal, alice's real GPU job.

- an admin's raw PromQL (instant and range) equals Prometheus' own answer;
- alice's job panels have data, equal to Prometheus' own answer for the same query and
  window; its GPU panel holds her GPU only (DCGM's ``hpc_job`` label);
- bob gets 403 for alice's job panels and for raw PromQL, unless an admin allowed PromQL;
- Prometheus stopped: the API answers 503 with the reason, the job and node pages still
  render.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import real_prometheus
from tests.integration import slurm_cli
from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_web_pages import browser as page_client
from tests.real_prometheus import GpuStandIn, RealPrometheus
from tests.webcheck import untranslated

pytestmark = pytest.mark.skipif(
    not real_prometheus.available(), reason="prometheus and prometheus-node-exporter missing"
)

API = "/api/v1"
NODES = ["node001", "node002", "node003", "node004", "gpu001", "viz-node001"]


@pytest.fixture(scope="module")
def gpu() -> GpuStandIn:
    return GpuStandIn(hostname="gpu001", gpus=2)


@pytest.fixture(scope="module")
def prom(gpu: GpuStandIn) -> Iterator[RealPrometheus]:
    with real_prometheus.real_prometheus(NODES, gpu) as running:
        yield running


@pytest.fixture(scope="module")
def portal(prom: RealPrometheus, make_portal: PortalFactory) -> RunningPortal:
    return make_portal(prometheus_url=prom.url, prometheus_timeout=5.0,
                       prometheus_min_step=1.0, prometheus_cache_seconds=2.0)  # fmt: skip


@pytest.fixture(scope="module")
def job(conf: str, gpu: GpuStandIn, prom: RealPrometheus, portal: RunningPortal) -> Iterator[int]:
    """alice's GPU job on gpu001, running, its GPU labelled by the stand-in as DCGM
    labels a job's GPU (``hpc_job``), at 87 % busy."""
    job_id = slurm_cli.sbatch(conf, "alice", "-p", "gpu", "--gres=gpu:1", "-J", "mon-test",
                              "--wrap", "sleep 600")  # fmt: skip
    try:
        slurm_cli.wait_running(conf, job_id, timeout=90)
        gpu.jobs[0], gpu.util[0] = str(job_id), 87.0
        prom.wait_for(f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job_id}"}}')
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        time.sleep(6)  # some seconds of the job's history, settled in Prometheus
        yield job_id
    finally:
        slurm_cli.scancel(conf, job_id)
        gpu.jobs.clear()


def get(portal: RunningPortal, who: dict[str, str], path: str, **params: Any) -> httpx.Response:
    with portal.client() as c:
        return c.get(API + path, headers=who, params=params)


def test_an_admins_raw_query_equals_prometheus_own_answer(
    portal: RunningPortal, prom: RealPrometheus, carol: dict[str, str]
) -> None:
    prom.wait_for(f"count(node_load1 offset 8s) >= {len(NODES)}")  # 8 s of history
    at = f"{prom.query('time()')['data']['result'][0] - 1:.3f}"  # type: ignore[index]
    for promql in ["node_load1", 'sum by (instance) (node_memory_MemTotal_bytes)',
                   "scalar(count(up))", "up[3s]"]:  # fmt: skip
        r = get(portal, carol, "/prometheus/query", query=promql, time=at)
        assert r.status_code == 200, r.text
        own = prom.query(promql, time=at)
        assert r.json()["status"] == own["status"] == "success"
        assert r.json()["data"] == own["data"], promql
        assert own["data"]["result"], promql  # type: ignore[index]
    start, end = float(at) - 5, float(at)
    r = get(portal, carol, "/prometheus/query_range", query="node_load1", start=start, end=end,
            step="1s")  # fmt: skip
    assert r.status_code == 200, r.text
    params: dict[str, str | float] = {"query": "node_load1", "start": start, "end": end,
                                      "step": 1}  # fmt: skip
    own = httpx.get(f"{prom.url}/api/v1/query_range", params=params).json()
    assert r.json()["data"] == own["data"] and len(own["data"]["result"]) == len(NODES)
    # The metadata endpoints too.
    r = get(portal, carol, "/prometheus/targets")
    assert r.status_code == 200, r.text
    instances = {t["labels"]["instance"] for t in r.json()["data"]["activeTargets"]}
    assert instances == {f"{n}:9100" for n in NODES} | {"gpu001:9400"}
    r = get(portal, carol, "/prometheus/series", **{"match[]": "node_load1"})
    assert r.status_code == 200 and len(r.json()["data"]) == len(NODES)
    r = get(portal, carol, "/prometheus/label/instance/values")
    assert set(r.json()["data"]) == instances
    for path in ["/prometheus/labels", "/prometheus/rules", "/prometheus/alerts",
                 "/prometheus/status/config"]:  # fmt: skip
        assert get(portal, carol, path).status_code == 200, path
    health = get(portal, carol, "/prometheus/health").json()
    assert health["healthy"] and health["ready"] and health["version"].startswith("2.")


def test_a_bad_query_is_a_422_with_prometheus_message_and_limits_hold(
    portal: RunningPortal, carol: dict[str, str]
) -> None:
    r = get(portal, carol, "/prometheus/query", query="sum(node_load1")
    assert r.status_code == 422 and r.json()["code"] == "prometheus_bad_query"
    assert "unclosed left parenthesis" in r.json()["detail"]
    r = get(portal, carol, "/prometheus/query_range", query="up", start=0, end=86400, step=1)
    assert r.status_code == 422 and "86401 points per series; the most is 11000" in r.text
    r = get(portal, carol, "/prometheus/query_range", query="up", start=0, end=10, step="soon")
    assert r.status_code == 422 and "duration" in r.json()["detail"]


def test_the_catalog_finds_node_exporter_and_dcgm(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    r = get(portal, alice, "/monitoring/panels")
    assert r.status_code == 200, r.text
    by_name = {p["name"]: p for p in r.json()["items"]}
    assert by_name["cpu_busy"]["exporter"] == "node_exporter"
    assert by_name["gpu_util"]["exporter"] == "dcgm_exporter" and by_name["gpu_util"]["for_jobs"]
    # This Prometheus scrapes node exporters and the DCGM stand-in, not slurmctld: what
    # Slurm allocated (its own OpenMetrics, 25.11+) is the one thing it cannot answer.
    missing = {name for name, p in by_name.items() if not p["available"]}
    assert missing == {"cpus_alloc", "memory_alloc", "gpus_alloc"}, missing
    assert "slurm_node_cpus_alloc" in by_name["cpus_alloc"]["reason"]
    assert all(p["reason"] is None for p in by_name.values() if p["available"])


def test_alices_job_panels_hold_prometheus_figures(
    portal: RunningPortal, prom: RealPrometheus, alice: dict[str, str], job: int
) -> None:
    r = get(portal, alice, f"/monitoring/jobs/{job}/panels/nope")
    assert r.status_code == 404 and "cpu_busy" in r.json()["detail"]
    r = get(portal, alice, f"/monitoring/jobs/{job}/panels/load")
    assert r.status_code == 200, r.text
    panel = r.json()
    assert panel["available"] and [s["name"] for s in panel["series"]] == ["gpu001"]
    values = panel["series"][0]["values"]
    assert any(v is not None for v in values)
    # The same query and window, asked of Prometheus itself, gives the same figures.
    own = httpx.get(f"{prom.url}/api/v1/query_range", params={
        "query": panel["query"], "start": panel["start"], "end": panel["end"],
        "step": panel["step"]}).json()["data"]["result"]  # fmt: skip
    assert len(own) == 1
    # (The last seconds may differ: a scrape started before the window's end can land
    # in Prometheus after the portal asked.)
    settled = panel["end"] - 3
    by_time = {round(t, 3): float(v) for t, v in own[0]["values"] if t <= settled}
    shown = {t: v for t, v in zip(panel["timestamps"], values, strict=True) if v is not None}
    assert {t: v for t, v in shown.items() if t <= settled} == by_time
    assert by_time  # figures from before the last seconds exist
    # CPU busy has figures too; the GPU panel holds alice's GPU only, at 87 %.
    cpu = get(portal, alice, f"/monitoring/jobs/{job}/panels/cpu_busy").json()
    assert any(v is not None for v in cpu["series"][0]["values"])
    gpu = get(portal, alice, f"/monitoring/jobs/{job}/panels/gpu_util").json()
    assert [s["name"] for s in gpu["series"]] == ["gpu001 GPU 0"]
    assert 87.0 in gpu["series"][0]["values"]
    # A node's panel: every GPU of the node.
    node = get(portal, alice, "/monitoring/nodes/gpu001/panels/gpu_util", range=120).json()
    assert [s["name"] for s in node["series"]] == ["gpu001 GPU 0", "gpu001 GPU 1"]


def test_bob_cannot_read_alices_job_panels_or_send_promql(
    portal: RunningPortal, bob: dict[str, str], carol: dict[str, str], job: int
) -> None:
    r = get(portal, bob, f"/monitoring/jobs/{job}/panels/cpu_busy")
    assert r.status_code == 403 and "owner and admins" in r.json()["detail"]
    assert get(portal, carol, f"/monitoring/jobs/{job}/panels/cpu_busy").status_code == 200
    assert get(portal, bob, "/monitoring/jobs/999999999/panels/cpu_busy").status_code == 404
    asks: list[tuple[str, dict[str, Any]]] = [("/prometheus/query", {"query": "up"}),
                         ("/prometheus/labels", {}), ("/prometheus/series", {"match[]": "up"}),
                         ("/prometheus/query_range", {"query": "up", "start": 0, "end": 1,
                                                     "step": 1})]  # fmt: skip
    for path, params in asks:
        r = get(portal, bob, path, **params)
        assert r.status_code == 403 and "prometheus_user_promql" in r.json()["detail"], path
    for path in ["/prometheus/targets", "/prometheus/rules", "/prometheus/status/config"]:
        assert get(portal, bob, path).status_code == 403, path


def test_an_admin_may_let_users_send_promql(
    prom: RealPrometheus, make_portal: PortalFactory
) -> None:
    with make_portal.run(prometheus_url=prom.url, prometheus_user_promql=True) as open_portal:
        bob = open_portal.login("bob")
        r = get(open_portal, bob, "/prometheus/query", query="count(node_load1)")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["result"][0]["value"][1] == str(len(NODES))
        assert get(open_portal, bob, "/prometheus/targets").status_code == 403  # still admins'


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_node_page_draws_its_graphs(browser: Any, portal: RunningPortal, lang: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  locale="ko-KR" if lang == "ko" else "en-US")  # fmt: skip
    try:
        page = context.new_page()
        login(page, portal.url, "alice")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        page.goto(f"{portal.url}/nodes/gpu001")
        section = page.locator('[data-testid="node-graphs"]')
        assert section.locator("h3").text_content() == ("그래프" if lang == "ko" else "Graphs")
        # Every panel of the catalog is drawn (uPlot), GPU ones with both GPUs.
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=node-graphs] .uplot').length === 11",
            timeout=30000,
        )
        gpu = section.locator('figure[data-panel="gpu_util"]')
        assert gpu.locator("figcaption").text_content() == (
            "GPU 사용률" if lang == "ko" else "GPU utilisation")  # fmt: skip
        legend = gpu.locator(".u-legend").text_content() or ""
        assert "gpu001 GPU 0" in legend and "gpu001 GPU 1" in legend
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []
    finally:
        context.close()


def test_prometheus_stopped_is_a_503_and_pages_still_render(
    portal: RunningPortal, prom: RealPrometheus, alice: dict[str, str], carol: dict[str, str],
    job: int,
) -> None:  # fmt: skip
    prom.stop()
    r = get(portal, carol, "/prometheus/query", query="up")
    assert r.status_code == 503 and r.json()["code"] == "prometheus_unavailable"
    assert "cannot be reached" in r.json()["detail"] and prom.url.split("//")[1] in r.text
    assert get(portal, alice, "/prometheus/health").status_code == 503
    r = get(portal, alice, f"/monitoring/jobs/{job}/panels/cpu_busy", step="7")
    assert r.status_code == 503 and "cannot be reached" in r.json()["detail"]
    pages = page_client(portal, "alice")
    try:
        assert pages.get(f"/jobs/{job}").status_code == 200
        assert pages.get("/nodes/gpu001").status_code == 200
    finally:
        pages.close()
