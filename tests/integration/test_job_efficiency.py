"""Job efficiency from metrics, end to end: a real Prometheus (``tests/real_prometheus``,
the DCGM stand-in for gpu001's GPUs), a real portal, alice's real GPU job on gpu001
whose GPU the test steers from 25 % to 85 %.

- while it runs: the GPU figure comes from Prometheus, CPU and memory from sstat's
  reading of its live steps (no per-job cgroup exporter here, and node-wide figures
  are no job's); a CPU-busy job's CPU figure equals the test's own sstat reading;
- once it ended: the GPU efficiency equals Prometheus' own mean over the same window
  (its ``avg_over_time`` of the job's series), CPU and memory come from ``sacct`` and
  equal what ``sacct`` itself prints; the accounting fields are as before;
- bob is refused (403, as for the job's graphs); the job page carries the labels;
- Prometheus stopped: still 200, accounting's figures, and the reason for the GPUs.

Slurm-facing (``sacct``'s fields and the snapshot per release).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests import real_prometheus
from tests.integration import slurm_cli
from tests.integration.browser import login
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.real_prometheus import GpuStandIn, RealPrometheus

pytestmark = pytest.mark.skipif(
    not real_prometheus.available(), reason="prometheus and prometheus-node-exporter missing"
)


@pytest.fixture(scope="module")
def gpu() -> GpuStandIn:
    return GpuStandIn(hostname="gpu001", gpus=2)


@pytest.fixture(scope="module")
def prom(gpu: GpuStandIn) -> Iterator[RealPrometheus]:
    with real_prometheus.real_prometheus(["gpu001"], gpu) as running:
        yield running


@pytest.fixture(scope="module")
def portal(prom: RealPrometheus, make_portal: PortalFactory) -> RunningPortal:
    return make_portal(prometheus_url=prom.url, prometheus_timeout=5.0,
                       prometheus_min_step=1.0, prometheus_cache_seconds=1.0)  # fmt: skip


def efficiency(portal: RunningPortal, headers: dict[str, str], job: int) -> httpx.Response:
    with portal.client() as c:
        return c.get(f"/api/v1/jobs/{job}/efficiency", headers=headers)


@pytest.fixture(scope="module")
def job(
    conf: str, gpu: GpuStandIn, prom: RealPrometheus, portal: RunningPortal, alice: dict[str, str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """alice's GPU job (4 s of CPU work, then sleeping), its GPU 0 at 25 % then 85 %,
    and its efficiency as the portal answered while it ran."""
    work = "timeout 4 sh -c 'while :; do :; done'; sleep 14"
    job_id = slurm_cli.sbatch(conf, "alice", "-p", "gpu", "--gres=gpu:1", "-J", "eff-test",
                              "--wrap", work)  # fmt: skip
    try:
        slurm_cli.wait_running(conf, job_id, timeout=90)
        gpu.jobs[0], gpu.util[0], gpu.util[1] = str(job_id), 25.0, 5.0
        prom.wait_for(f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job_id}"}}')
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        time.sleep(5)
        gpu.util[0] = 85.0
        time.sleep(3)
        r = efficiency(portal, alice, job_id)
        assert r.status_code == 200, r.text
        yield job_id, r.json()
    finally:
        slurm_cli.scancel(conf, job_id, missing_ok=True)
        gpu.jobs.clear()
        gpu.util.clear()


@pytest.fixture(scope="module")
def finished(
    conf: str, gpu: GpuStandIn, portal: RunningPortal, alice: dict[str, str],
    job: tuple[int, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """The portal's answer once the job ended and accounting recorded it."""
    job_id = job[0]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = efficiency(portal, alice, job_id).json()
        if not answer.get("running", True) and answer["state"] == "COMPLETED":
            gpu.jobs.clear()
            time.sleep(3)  # the last scrapes of the window settled
            return dict(efficiency(portal, alice, job_id).json())
        time.sleep(1)
    raise AssertionError(f"job {job_id} never showed as finished: {answer}")


def test_a_running_jobs_gpu_from_prometheus_cpu_and_memory_at_its_end(
    job: tuple[int, dict[str, Any]],
) -> None:
    _, running = job
    figures = running["figures"]
    assert running["running"] is True and running["window"]["running"] is True
    gpu = figures["gpu_utilisation"]
    assert gpu["source"] == "prometheus" and gpu["exporter"] == "dcgm_exporter"
    assert 0.25 <= gpu["value"] <= 0.85
    for name in ("cpu", "memory"):  # no cgroup exporter: sstat, or no step yet
        assert figures[name]["source"] == "sstat" or figures[name]["why"] == "no_steps"


def test_the_job_page_shows_the_efficiency_section(
    portal: RunningPortal, job: tuple[int, dict[str, Any]]
) -> None:
    client = portal.client(follow_redirects=False)
    r = client.post("/login", data={"username": "alice", "password": "alice-demo", "next": "/"})
    assert r.status_code == 303, r.text
    page = client.get(f"/jobs/{job[0]}").text
    section = page[page.index('data-testid="job-efficiency"') :]
    section = section[: section.index(">")]
    assert " hidden" not in section  # running or finished: shown
    for label in (
        "data-label-gpu=",
        "data-label-source-prometheus=",
        "data-label-why-job-running=",
        "data-label-source-sstat=",
        "data-label-why-no-steps=",
        "data-label-why-prometheus-error=",
    ):
        assert label in section  # fmt: skip
    client.close()


def sstat_reading(conf: str, job_id: int) -> tuple[int, float, float]:
    """The test's own sstat reading as alice: (live steps, CPU seconds as AveCPU x
    NTasks summed over them, when it was taken)."""
    argv = ["sstat", "-j", str(job_id), "--allsteps", "--parsable2", "--noheader",
            "--format=JobID,AveCPU,NTasks"]  # fmt: skip
    out = slurm_cli.run(conf, argv, user="alice")
    taken = time.time()
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return len(rows), sum(seconds(r[1]) * int(r[2] or 1) for r in rows), taken


def test_a_running_cpu_busy_jobs_cpu_comes_from_sstat(
    conf: str, portal: RunningPortal, alice: dict[str, str]
) -> None:
    """alice's 1-CPU busy loop: the portal's CPU figure equals what sstat says, within
    what the job can do between the test's two sstat reads around the portal's."""
    job_id = slurm_cli.sbatch(conf, "alice", "-c", "1", "-t", "3", "-J", "eff-sstat",
                              "--wrap", "timeout 150 sh -c 'while :; do :; done'")  # fmt: skip
    try:
        slurm_cli.wait_running(conf, job_id, timeout=90)
        started = slurm_cli.run(conf, ["squeue", "-h", "-j", str(job_id), "-o", "%S"]).strip()
        start = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # slurmstepd samples the step every so often
            steps, cpu, _ = sstat_reading(conf, job_id)
            if steps and cpu > 0:
                break
            time.sleep(2)
        else:
            raise AssertionError(f"sstat never measured job {job_id}")
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        _, before, t_before = sstat_reading(conf, job_id)
        r = efficiency(portal, alice, job_id)
        _, after, t_after = sstat_reading(conf, job_id)
        assert r.status_code == 200, r.text
        figures = r.json()["figures"]
        cpu = figures["cpu"]
        assert cpu["source"] == "sstat", cpu
        # The portal read sstat and the clock between the test's two reads: its CPU
        # time is between ``before`` and ``after`` and its elapsed time between the two
        # reads' (less start's one-second resolution); rounded to 4 places.
        low = before / (t_after + 1 - start)
        high = after / max(t_before - 1 - start, 1e-9)
        assert low - 1e-4 <= cpu["value"] <= high + 1e-4, (low, cpu["value"], high)
        assert 0 < cpu["value"] <= 1.05
        memory = figures["memory"]
        assert memory["source"] == "sstat" and 0 < memory["value"] < 1, memory
    finally:
        slurm_cli.scancel(conf, job_id, missing_ok=True)


def seconds(text: str) -> float:
    """sacct's durations: [D-][HH:]MM:SS[.mmm]."""
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


def megabytes(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)([KMGT]?)[nc]?", text)
    if match is None:
        return None
    return float(match[1]) * {"": 1 / 1048576, "K": 1 / 1024, "M": 1.0, "G": 1024.0,
                              "T": 1048576.0}[match[2]]  # fmt: skip


def test_a_finished_jobs_gpu_equals_prometheus_and_cpu_memory_equal_sacct(
    conf: str, prom: RealPrometheus, job: tuple[int, dict[str, Any]], finished: dict[str, Any]
) -> None:
    job_id = job[0]
    window, figures = finished["window"], finished["figures"]
    assert finished["running"] is False and finished["gpus"] == 1
    # Prometheus' own mean of the job's GPU over the same window and step.
    span = window["end"] - window["start"] + window["step"] / 2
    own = prom.query(
        f'avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job_id}"}}'
        f"[{round(span * 1000)}ms:{round(window['step'] * 1000)}ms]))",
        time=str(window["end"]),
    )["data"]["result"]  # type: ignore[index]
    expected = float(own[0]["value"][1]) / 100
    gpu = figures["gpu_utilisation"]
    assert gpu["source"] == "prometheus" and gpu["metric"] == "DCGM_FI_DEV_GPU_UTIL"
    assert gpu["value"] == pytest.approx(expected, abs=6e-5)
    assert 0.25 < gpu["value"] < 0.85  # both loads counted, over time
    # 2048 of 16384 MiB in the stand-in.
    assert figures["gpu_memory"]["value"] == 0.125
    # CPU and memory: sacct's own figures.
    fields = "--format=JobID,Elapsed,TotalCPU,AllocCPUS,ReqMem,MaxRSS"
    out = slurm_cli.run(conf, ["sacct", "-j", str(job_id), "--parsable2", "--noheader", fields])
    rows = [line.split("|") for line in out.splitlines() if line]
    main = next(r for r in rows if r[0] == str(job_id))
    elapsed, total_cpu, cpus = seconds(main[1]), seconds(main[2]), int(main[3])
    assert total_cpu >= 0.5  # the busy loop (on a loaded machine it gets what it gets)
    cpu = figures["cpu"]
    assert cpu["source"] == "sacct"
    assert cpu["value"] == pytest.approx(round(total_cpu / (elapsed * cpus), 4), abs=1e-4)
    assert finished["cpu_efficiency"] == cpu["value"]  # the field as before
    peaks = [m for m in (megabytes(r[5]) for r in rows if r[0].startswith(f"{job_id}."))
             if m is not None]  # fmt: skip
    requested = megabytes(main[4])
    memory = figures["memory"]
    if peaks and requested:
        assert memory["source"] == "sacct"
        assert memory["value"] == pytest.approx(round(max(peaks) / requested, 4), abs=1e-4)
    else:
        assert memory["value"] is None and memory["reason"]


def test_the_page_draws_each_figure_with_its_source(
    browser: Any, portal: RunningPortal, job: tuple[int, dict[str, Any]],
    finished: dict[str, Any],
) -> None:  # fmt: skip
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        login(page, portal.url, "alice")
        page.goto(f"{portal.url}/jobs/{job[0]}")
        page.wait_for_selector('[data-testid="job-efficiency"][data-loaded="true"]',
                               timeout=30000)  # fmt: skip
        rows = page.locator("[data-efficiency-facts] [data-figure]")
        drawn = {rows.nth(i).get_attribute("data-figure"): (
            rows.nth(i).get_attribute("data-source"), rows.nth(i).locator("dd").text_content())
            for i in range(rows.count())}  # fmt: skip
        assert set(drawn) == {"cpu", "memory", "gpu_utilisation", "gpu_memory"}
        assert drawn["gpu_utilisation"][0] == "prometheus"
        assert "from Prometheus (dcgm_exporter)" in (drawn["gpu_utilisation"][1] or "")
        assert drawn["cpu"][0] == "sacct" and "from accounting (sacct)" in (drawn["cpu"][1] or "")
        assert drawn["gpu_memory"][1] is not None and drawn["gpu_memory"][1].startswith("12.5")
    finally:
        context.close()


def test_bob_is_refused_alices_figures(
    portal: RunningPortal, bob: dict[str, str], job: tuple[int, dict[str, Any]]
) -> None:
    job_id = job[0]
    r = efficiency(portal, bob, job_id)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == f"The figures of job {job_id} are for its owner and admins."
    with portal.client() as c:  # the same answer as for the job's graphs
        graphs = c.get(f"/api/v1/monitoring/jobs/{job_id}/panels/gpu_util", headers=bob)
    assert graphs.status_code == 403
    assert efficiency(portal, bob, 99999999).status_code == 404


def test_prometheus_stopped_leaves_accounting_and_a_reason(
    prom: RealPrometheus, portal: RunningPortal, alice: dict[str, str],
    job: tuple[int, dict[str, Any]], finished: dict[str, Any],
) -> None:  # fmt: skip
    prom.stop()
    time.sleep(1.5)  # past the portal's cache
    r = efficiency(portal, alice, job[0])
    assert r.status_code == 200, r.text
    figures = r.json()["figures"]
    assert figures["cpu"] == finished["figures"]["cpu"]
    assert figures["gpu_utilisation"]["value"] is None
    assert figures["gpu_utilisation"]["reason"].startswith("Prometheus could not be asked")
