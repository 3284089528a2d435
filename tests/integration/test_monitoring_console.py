"""The monitoring console end to end: a real Prometheus (``tests/real_prometheus.py``)
that scrapes the node exporter as each dev-cluster node, the DCGM stand-in for gpu001
and a real portal's own ``/metrics``; the same portal answers the pages and the API.

- cluster history: the named panels (CPUs and GPUs per partition, jobs by state) hold
  exactly what Prometheus answers for the same query and step-aligned window, and the
  latest figures are Slurm's own (the partitions' CPUs as Slurm lists its nodes); the
  answers are shared; PromQL is never taken from the caller.
- the admin monitoring page and ``/monitoring/overview``: every target Prometheus scrapes
  (the portal too) with its health, the alerts firing (a rule file whose alert fires per
  node), the idle-GPU list; for admins only; Prometheus unreachable: the page renders
  and says why.
- events on the graphs' time axis: alice's job's start (as the job's page has it), no
  end while it runs, bob refused; a node's drain applied through the portal (a row of
  ``admin_changes``) with who and why for admins only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcportal.db.models import AdminChange
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
FIXTURES = Path(__file__).parents[1] / "fixtures" / "prometheus"
NODES = ["node001", "node002", "node003", "node004", "gpu001", "viz-node001"]
CPUS_QUERY = "max by (partition, kind) (hpcportal_slurm_partition_cpus)"
JOBS_QUERY = "sum by (state) (max by (partition, account, state) (hpcportal_slurm_jobs))"


@pytest.fixture(scope="module")
def gpu() -> GpuStandIn:
    return GpuStandIn(hostname="gpu001", gpus=2)


@pytest.fixture(scope="module")
def prom(gpu: GpuStandIn) -> Iterator[RealPrometheus]:
    with real_prometheus.real_prometheus(NODES, gpu, rules=FIXTURES / "rules.yml") as running:
        yield running


@pytest.fixture(scope="module")
def portal(prom: RealPrometheus, make_portal: PortalFactory) -> RunningPortal:
    # 2000 points per panel: the hour's step is 2 s, so a history a few seconds old
    # already has points; the month's is 1296 s (one window for the whole test).
    running = make_portal(prometheus_url=prom.url, prometheus_timeout=5.0,
                          prometheus_min_step=1.0, prometheus_cache_seconds=60.0,
                          prometheus_panel_points=2000, prometheus_catalog_seconds=1.0)  # fmt: skip
    prom.scrape_portal(running.url)
    # Samples older than the last, unsettled, seconds (a slow scrape leaves gaps).
    prom.wait_for('count_over_time(hpcportal_slurm_partition_cpus{kind="total"}[1m] '
                  "offset 5s) >= 4", timeout=120)  # fmt: skip
    return running


@pytest.fixture(scope="module")
def job(conf: str, portal: RunningPortal, prom: RealPrometheus) -> Iterator[int]:
    """alice's running job on node001, counted by the portal's gauges."""
    job_id = slurm_cli.sbatch(conf, "alice", "-p", "normal", "-J", "console-test",
                              "--wrap", "sleep 600")  # fmt: skip
    try:
        slurm_cli.wait_running(conf, job_id, timeout=90)
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        # Some seconds of it in Prometheus (more than the last, unsettled, ones).
        prom.wait_for('count_over_time(hpcportal_slurm_jobs{account="research",'
                      'state="running"}[1m]) >= 10', timeout=60)  # fmt: skip
        yield job_id
    finally:
        slurm_cli.scancel(conf, job_id, missing_ok=True)


def get(portal: RunningPortal, who: dict[str, str], path: str, **params: Any) -> httpx.Response:
    with portal.client() as c:
        return c.get(API + path, headers=who, params=params)


def own_range(prom: RealPrometheus, promql: str, panel: dict[str, Any]) -> list[dict[str, Any]]:
    params = {"query": promql, "start": panel["start"], "end": panel["end"],
              "step": panel["step"]}  # fmt: skip
    answer = httpx.get(f"{prom.url}/api/v1/query_range", params=params, timeout=10).json()
    assert answer["status"] == "success"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def settled_equal(panel: dict[str, Any], own: list[dict[str, Any]], by: tuple[str, ...]) -> int:
    """Each series of the panel equals Prometheus' own for the same labels, up to the
    last seconds (a scrape that began before the window's end may land after the
    portal asked); returns how many figures were compared."""
    settled = panel["end"] - 3
    theirs = {
        tuple(s["metric"][label] for label in by): {
            round(t, 3): float(v) for t, v in s["values"] if t <= settled
        }
        for s in own
    }
    mine = {
        tuple(s["labels"][label] for label in by): {
            t: v
            for t, v in zip(panel["timestamps"], s["values"], strict=True)
            if v is not None and t <= settled
        }
        for s in panel["series"]
    }
    assert {k: v for k, v in mine.items() if v} == {k: v for k, v in theirs.items() if v}
    return sum(len(v) for v in theirs.values())


def test_history_of_cpus_equals_prometheus_and_slurm(
    portal: RunningPortal, prom: RealPrometheus, alice: dict[str, str], conf: str
) -> None:
    r = get(portal, alice, "/monitoring/history/cpus", range="hour")
    assert r.status_code == 200, r.text
    panel = r.json()
    assert panel["available"] and panel["query"] == CPUS_QUERY
    assert panel["step"] == 2.0 and panel["start"] % 2 == 0 and panel["end"] % 2 == 0
    assert 3598 <= panel["end"] - panel["start"] <= 3600
    assert settled_equal(panel, own_range(prom, CPUS_QUERY, panel), ("partition", "kind")) >= 4
    # The newest figures are Slurm's: each partition's CPUs as Slurm lists its nodes.
    expected: dict[str, float] = {}
    for node in slurm_cli.all_nodes(conf):
        for partition in node["partitions"]:
            expected[partition] = expected.get(partition, 0) + node["cpus"]
    latest = {}
    for s in panel["series"]:
        if s["labels"]["kind"] == "total":
            latest[s["labels"]["partition"]] = [v for v in s["values"] if v is not None][-1]
    assert latest == expected
    names = [s["name"] for s in panel["series"]]
    assert "normal allocated" in names and "normal total" in names


def test_history_of_jobs_counts_alices_running_job(
    portal: RunningPortal, prom: RealPrometheus, alice: dict[str, str], job: int
) -> None:
    panel = get(portal, alice, "/monitoring/history/jobs", range="hour").json()
    assert panel["available"] and panel["query"] == JOBS_QUERY
    assert settled_equal(panel, own_range(prom, JOBS_QUERY, panel), ("state",)) >= 1
    running = next(s for s in panel["series"] if s["labels"]["state"] == "running")
    assert running["name"] == "running" and max(v or 0 for v in running["values"]) >= 1
    gpus = get(portal, alice, "/monitoring/history/gpus", range="hour").json()
    totals = {s["labels"]["partition"]: [v for v in s["values"] if v is not None][-1]
              for s in gpus["series"] if s["labels"]["kind"] == "total"}  # fmt: skip
    assert totals["gpu"] == 2 and totals["normal"] == 0


def test_history_answers_are_shared_and_named_only(
    portal: RunningPortal, bob: dict[str, str], alice: dict[str, str]
) -> None:
    monitoring = portal.services.monitoring
    assert monitoring is not None
    answers = monitoring.answers
    first = get(portal, bob, "/monitoring/history/cpus", range="month").json()
    before = answers.fetched
    for who in (alice, bob, alice):
        again = get(portal, who, "/monitoring/history/cpus", range="month").json()
        if again["end"] == first["end"]:  # (unless a 1296 s step boundary passed)
            assert again == first
    assert answers.fetched - before <= 1
    assert first["step"] == 1296.0 and first["start"] % 1296 == 0
    r = get(portal, alice, "/monitoring/history/nope")
    assert r.status_code == 404 and "cpus, gpus, jobs" in r.json()["detail"]
    r = get(portal, alice, "/monitoring/history/cpus", range="year")
    assert r.status_code == 422
    r = get(portal, alice, "/monitoring/history/cpus", query="up")
    assert r.status_code == 422  # no PromQL from the caller, not even ignored


def test_history_page_links_and_renders(portal: RunningPortal) -> None:
    pages = page_client(portal, "alice")
    try:
        assert 'href="/cluster/history"' in pages.get("/partitions").text
        assert 'href="/cluster/history"' in pages.get("/nodes").text
        html = pages.get("/cluster/history", params={"range": "week"}).text
        assert 'data-history-graphs="week"' in html
        for name in ("cpus", "gpus", "jobs"):
            assert f'data-history-panel="{name}"' in html
        ko = page_client(portal, "alice", "ko")
        try:
            assert "클러스터 기록" in ko.get("/cluster/history").text
        finally:
            ko.close()
    finally:
        pages.close()


def test_the_admin_overview_holds_prometheus_targets_and_alerts(
    portal: RunningPortal, prom: RealPrometheus, carol: dict[str, str], alice: dict[str, str]
) -> None:
    prom.wait_for('ALERTS{alertname="NodeUp",alertstate="firing"}')
    r = get(portal, carol, "/monitoring/overview")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["error"] is None and view["health"]["ready"]
    own = httpx.get(f"{prom.url}/api/v1/targets", params={"state": "active"}).json()
    theirs = {(t["scrapePool"], t["labels"]["instance"], t["health"])
              for t in own["data"]["activeTargets"]}  # fmt: skip
    mine = {(t["pool"], t["instance"], t["health"]) for t in view["targets"]}
    assert mine == theirs
    portal_address = portal.url.split("//")[1]
    assert ("portal", portal_address, "up") in mine and len(mine) == len(NODES) + 2
    firing = {(a["name"], a["labels"]["instance"]) for a in view["firing"]}
    assert {("NodeUp", f"{n}:9100") for n in NODES} <= firing
    assert get(portal, alice, "/monitoring/overview").status_code == 403
    pages = page_client(portal, "carol")
    try:
        html = pages.get("/admin/monitoring").text
        assert 'href="/admin/monitoring" aria-current="page"' in html
        assert f'data-target="{portal_address}" data-health="up"' in html
        assert 'data-alert="NodeUp"' in html and 'data-testid="no-idle-gpus"' in html
        assert 'data-testid="prometheus-error"' not in html
        assert 'href="/admin/monitoring"' in pages.get("/admin/scheduler").text
    finally:
        pages.close()
    denied = page_client(portal, "alice")
    try:
        assert denied.get("/admin/monitoring").status_code == 403
    finally:
        denied.close()


def test_the_admin_page_renders_and_says_why_when_prometheus_is_down(
    make_portal: PortalFactory,
) -> None:
    dead = f"http://127.0.0.1:{real_prometheus.free_port()}"
    with make_portal.run(prometheus_url=dead, prometheus_timeout=2.0) as down:
        carol = down.login("carol")
        r = get(down, carol, "/monitoring/overview")
        assert r.status_code == 200 and "cannot be reached" in r.json()["error"]
        for lang, words in (("en", "Prometheus cannot be read"),
                            ("ko", "Prometheus를 읽을 수 없습니다")):  # fmt: skip
            pages = page_client(down, "carol", lang)
            try:
                page = pages.get("/admin/monitoring")
                assert page.status_code == 200
                assert words in page.text and dead.split("//")[1] in page.text
                assert 'data-testid="no-targets"' in page.text
            finally:
                pages.close()


def test_graph_events_of_a_job_and_a_node(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], carol: dict[str, str],
    job: int,
) -> None:  # fmt: skip
    r = get(portal, alice, f"/monitoring/jobs/{job}/events")
    assert r.status_code == 200, r.text
    started = get(portal, alice, f"/jobs/{job}").json()["job"]["start_time"]
    start = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    assert r.json()["items"] == [{"at": start, "kind": "job_start", "detail": None}]
    assert time.time() - 600 < start <= time.time()
    assert get(portal, bob, f"/monitoring/jobs/{job}/events").status_code == 403
    # A drain of node[003-004] the portal applied ten minutes ago (its own record).
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    with portal.services.database.session() as session:
        session.add(AdminChange(at=at, username="carol", kind="node.drain",
                                target="node:node[003-004]", reason="console-test",
                                commands=[], previous={}, revert=[]))  # fmt: skip
        session.commit()
    try:
        mine = get(portal, carol, "/monitoring/nodes/node004/events").json()["items"]
        assert {"at": at.timestamp(), "kind": "node_drain",
                "detail": "carol: console-test"} in mine  # fmt: skip
        theirs = get(portal, alice, "/monitoring/nodes/node004/events").json()["items"]
        assert {"at": at.timestamp(), "kind": "node_drain", "detail": None} in theirs
        short = get(portal, carol, "/monitoring/nodes/node004/events", range=300).json()
        assert all(e["kind"] != "node_drain" for e in short["items"])
        other = get(portal, carol, "/monitoring/nodes/node001/events").json()["items"]
        assert all(e["kind"] != "node_drain" for e in other)  # not in node[003-004]
        assert get(portal, carol, "/monitoring/nodes/nope/events").status_code == 404
    finally:
        with portal.services.database.session() as session:
            row = session.query(AdminChange).filter_by(reason="console-test").one()
            session.delete(row)
            session.commit()


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_history_and_event_marks_in_the_browser(
    browser: Any, portal: RunningPortal, job: int, lang: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  locale="ko-KR" if lang == "ko" else "en-US")  # fmt: skip
    try:
        page = context.new_page()
        login(page, portal.url, "alice")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        page.goto(f"{portal.url}/cluster/history?range=hour")
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=history-graphs] .uplot').length === 3",
            timeout=30000,
        )
        cpus = page.locator('figure[data-history-panel="cpus"]')
        assert cpus.locator("figcaption").text_content() == (
            "파티션별 CPU" if lang == "ko" else "CPUs by partition")  # fmt: skip
        legend = cpus.locator(".u-legend").text_content() or ""
        assert ("normal 전체" if lang == "ko" else "normal total") in legend
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []
        page.goto(f"{portal.url}/jobs/{job}")
        page.wait_for_selector("[data-graph-events] li[data-kind=job_start]", timeout=30000)
        page.wait_for_function(
            "[...document.querySelectorAll('[data-job-graphs] .graph-box')]"
            ".some((b) => b.dataset.marks === '1')",
            timeout=30000,
        )
        text = page.locator("[data-graph-events]").text_content() or ""
        assert ("작업 시작" if lang == "ko" else "Job started") in text
    finally:
        context.close()
