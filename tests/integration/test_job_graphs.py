"""Graphs on the job detail page, end to end: a real Prometheus (``tests/real_prometheus``,
the real node exporter scraped once per dev-cluster node name and the DCGM stand-in for
gpu001's GPUs), a real portal, alice's real GPU job on gpu001.

- alice's job page has a Graphs section; in Chromium (English and Korean) it draws the
  job's panels with uPlot, and the CPU and GPU figures the page fetched equal
  Prometheus' own answer for the same query and window; the GPU panel holds her GPU
  only; axe-clean, fully translated; screenshots of the job and node graphs;
- bob sees alice's job without its Graphs section and gets 403 for its panels.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import real_prometheus
from tests.integration import slurm_cli
from tests.integration.browser import axe_violations, describe, login, screenshot
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.real_prometheus import GpuStandIn, RealPrometheus
from tests.webcheck import untranslated

pytestmark = pytest.mark.skipif(
    not real_prometheus.available(), reason="prometheus and prometheus-node-exporter missing"
)

NODES = ["node001", "node002", "node003", "node004", "gpu001", "viz-node001"]
#: Panels drawn for a GPU job: 7 node panels (CPU, memory, load, network x2, disk x2)
#: and 4 GPU panels (DCGM names the job).
JOB_PANELS = 11


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
    """alice's GPU job on gpu001, running, its GPU 1 labelled with hpc_job at 63 %."""
    job_id = slurm_cli.sbatch(conf, "alice", "-p", "gpu", "--gres=gpu:1", "-J", "graphs-test",
                              "--wrap", "sleep 600")  # fmt: skip
    try:
        slurm_cli.wait_running(conf, job_id, timeout=90)
        gpu.jobs[1], gpu.util[1], gpu.util[0] = str(job_id), 63.0, 5.0
        prom.wait_for(f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job_id}"}}')
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        time.sleep(6)  # some seconds of the job's history, settled in Prometheus
        yield job_id
    finally:
        slurm_cli.scancel(conf, job_id)
        gpu.jobs.clear()
        gpu.util.clear()


def page_client(portal: RunningPortal, user: str) -> httpx.Client:
    """A client logged in through the login form, as a browser is."""
    client = portal.client(follow_redirects=False)
    r = client.post("/login", data={"username": user, "password": f"{user}-demo", "next": "/"})
    assert r.status_code == 303, r.text
    return client


def own_answer(prom: RealPrometheus, panel: dict[str, Any]) -> dict[float, dict[str, float]]:
    """Prometheus' own answer for the panel's query and window, by time then series
    (the node label, or node and GPU), up to 3 s before the window's end (a scrape
    started before the end may land after the portal asked)."""
    result = httpx.get(f"{prom.url}/api/v1/query_range", params={
        "query": panel["query"], "start": panel["start"], "end": panel["end"],
        "step": panel["step"]}, timeout=10).json()["data"]["result"]  # fmt: skip
    settled = panel["end"] - 3
    out: dict[float, dict[str, float]] = {}
    for item in result:
        labels = item["metric"]
        name = labels.get("node", labels.get("instance", "?")).rsplit(":", 1)[0]
        if "gpu" in labels:
            name = f"{name} GPU {labels['gpu']}"
        for at, value in item["values"]:
            if at <= settled:
                out.setdefault(round(at, 3), {})[name] = float(value)
    return out


def shown(panel: dict[str, Any]) -> dict[float, dict[str, float]]:
    settled = panel["end"] - 3
    out: dict[float, dict[str, float]] = {}
    for series in panel["series"]:
        for at, value in zip(panel["timestamps"], series["values"], strict=True):
            if value is not None and at <= settled:
                out.setdefault(at, {})[series["name"]] = value
    return out


def test_bob_sees_alices_job_without_its_graphs(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], job: int
) -> None:
    pages = page_client(portal, "alice")
    try:
        r = pages.get(f"/jobs/{job}")
        assert r.status_code == 200
        assert f'data-job-graphs="{job}"' in r.text and 'data-gpus="1"' in r.text
        assert "uPlot.iife.min.js" in r.text and "node_graphs.js" in r.text
    finally:
        pages.close()
    pages = page_client(portal, "bob")
    try:
        r = pages.get(f"/jobs/{job}")
        assert r.status_code == 200, r.text  # bob may see the job (same account) ...
        assert 'data-testid="job-detail"' in r.text
        assert "data-job-graphs" not in r.text  # ... but not its figures
    finally:
        pages.close()
    with portal.client() as c:
        for panel in ["cpu_busy", "gpu_util"]:
            r = c.get(f"/api/v1/monitoring/jobs/{job}/panels/{panel}", headers=bob)
            assert r.status_code == 403 and "owner and admins" in r.json()["detail"]
            assert c.get(f"/api/v1/monitoring/jobs/{job}/panels/{panel}",
                         headers=alice).status_code == 200  # fmt: skip


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_job_and_node_pages_draw_their_graphs(
    browser: Any, portal: RunningPortal, prom: RealPrometheus, job: int, lang: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  locale="ko-KR" if lang == "ko" else "en-US")  # fmt: skip
    try:
        page = context.new_page()
        login(page, portal.url, "alice")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        fetched: dict[str, dict[str, Any]] = {}

        def keep(response: Any) -> None:
            marker = f"/api/v1/monitoring/jobs/{job}/panels/"
            if marker in response.url and response.status == 200:
                fetched[response.url.split(marker, 1)[1].split("?")[0]] = response.json()

        page.on("response", keep)
        page.goto(f"{portal.url}/jobs/{job}")
        section = page.locator('[data-testid="job-graphs"]')
        assert section.locator("h2").text_content() == ("그래프" if lang == "ko" else "Graphs")
        page.wait_for_function(
            f"document.querySelectorAll('[data-testid=job-graphs] .uplot').length === {JOB_PANELS}",
            timeout=30000,
        )
        page.wait_for_load_state("networkidle")
        # What the page drew is what Prometheus itself answers for the same query and
        # window: CPU busy for the job's node, GPU utilisation for its own GPU only.
        cpu, gpu = fetched["cpu_busy"], fetched["gpu_util"]
        assert [s["name"] for s in cpu["series"]] == ["gpu001"]
        assert [s["name"] for s in gpu["series"]] == ["gpu001 GPU 1"]
        for panel in (cpu, gpu):
            figures = shown(panel)
            assert figures, panel["panel"]  # settled figures exist
            assert figures == own_answer(prom, panel), panel["panel"]
        assert {v["gpu001 GPU 1"] for v in shown(gpu).values()} == {63.0}
        figure = section.locator('figure[data-panel="gpu_util"]')
        assert figure.locator("figcaption").text_content() == (
            "GPU 사용률" if lang == "ko" else "GPU utilisation")  # fmt: skip
        legend = figure.locator(".u-legend").text_content() or ""
        assert "gpu001 GPU 1" in legend and "gpu001 GPU 0" not in legend
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []
        screenshot(page, f"screenshots/job-graphs-{lang}-desktop")
        # The node page draws every panel of the node (both GPUs).
        page.goto(f"{portal.url}/nodes/gpu001")
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=node-graphs] .uplot').length === 11",
            timeout=30000,
        )
        legend = page.locator('[data-testid="node-graphs"] figure[data-panel="gpu_util"]'
                              " .u-legend").text_content() or ""  # fmt: skip
        assert "gpu001 GPU 0" in legend and "gpu001 GPU 1" in legend
        problems = axe_violations(page)
        assert not problems, describe(problems)
        screenshot(page, f"screenshots/node-graphs-{lang}-desktop")
    finally:
        context.close()
