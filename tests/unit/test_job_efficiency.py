"""Job efficiency from metrics on recorded real Prometheus answers
(``tests/fixtures/prometheus/efficiency_*.json``, ``record_efficiency.py``): job 4242's
GPU 0 at 30 % then 90 % (DCGM's ``hpc_job``), its cgroup from cgroup_exporter's series;
each figure's source and the fallbacks to accounting."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from hpcportal.config import Settings
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.services.efficiency import Efficiency
from hpcportal.services.monitoring.job_efficiency import JobEfficiency, measure
from hpcportal.services.monitoring.service import JobWindow, MonitoringService

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"
ASKED = json.loads((FIXTURES / "efficiency_queries.json").read_bytes())
WINDOW = ASKED.pop("efficiency_window")
BY_QUERY = {item["query"]: name for name, item in ASKED.items()}
START, END = (
    datetime.fromtimestamp(WINDOW["start"], UTC),
    datetime.fromtimestamp(WINDOW["end"], UTC),
)
#: Accounting's figures of the finished job (4 CPUs, 8 GiB asked).
SACCT = Efficiency(job_id="4242", state="COMPLETED", elapsed_seconds=9, cpus=4,
                   cpu_time_seconds=3.6, cpu_efficiency=0.1, memory_requested_mb=8192.0,
                   memory_max_used_mb=1024.0, memory_efficiency=0.125)  # fmt: skip
FINISHED = JobWindow(4242, ["gpu001"], START, END)
RUNNING = JobWindow(4242, ["gpu001"], START, None)


def values(name: str) -> list[float]:
    answer = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return [float(v) for series in answer["data"]["result"] for _, v in series["values"]]


def service(
    names: str | set[str] = "efficiency_label_values.json", *, down: bool = False
) -> tuple[MonitoringService, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    if isinstance(names, set):
        listed = json.dumps({"status": "success", "data": sorted(names)}).encode()
    else:
        listed = (FIXTURES / names).read_bytes()

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/api/v1/label/__name__/values":
            return httpx.Response(200, content=listed)
        params = request.url.params
        assert (float(params["start"]), float(params["end"]), float(params["step"])) == (
            WINDOW["start"], WINDOW["end"], WINDOW["step"])  # fmt: skip
        return httpx.Response(200, content=(FIXTURES / f"{BY_QUERY[params['query']]}.json")
                              .read_bytes())  # fmt: skip

    settings = Settings(prometheus_url="http://prom.test", prometheus_min_step=1.0)
    client = PrometheusClient("http://prom.test", 2.0, transport=httpx.MockTransport(handle))
    return MonitoringService(settings, client, clock=lambda: WINDOW["end"] + 0.5), seen


def run(monitoring: MonitoringService | None, job: JobWindow, gpus: int = 1) -> JobEfficiency:
    return asyncio.run(measure(monitoring, SACCT, job, gpus))


def names_without_cgroups() -> set[str]:
    listed = json.loads((FIXTURES / "efficiency_label_values.json").read_bytes())["data"]
    return {n for n in listed if not n.startswith("cgroup_")}


def test_gpus_from_dcgm_and_cpu_memory_from_sacct_without_a_cgroup_exporter() -> None:
    monitoring, seen = service(names_without_cgroups())
    result = run(monitoring, FINISHED)
    gpu = result.figures.gpu_utilisation
    util = values("efficiency_gpu_util")
    assert set(util) == {30.0, 90.0}  # the recorded answer has both loads
    assert gpu.value == round(sum(util) / len(util) / 100, 4)
    assert (gpu.source, gpu.exporter, gpu.metric) == (
        "prometheus", "dcgm_exporter", "DCGM_FI_DEV_GPU_UTIL")  # fmt: skip
    assert gpu.query == ASKED["efficiency_gpu_util"]["query"]
    assert result.figures.gpu_memory.value == 0.125  # 2048 of 16384 MiB
    assert (result.figures.cpu.source, result.figures.cpu.value) == ("sacct", 0.1)
    assert (result.figures.memory.source, result.figures.memory.value) == ("sacct", 0.125)
    assert result.cpu_efficiency == 0.1 and result.cpus == 4  # the fields as before
    assert result.window is not None and not result.window.running
    assert (result.window.start, result.window.end) == (WINDOW["start"], WINDOW["end"])
    queries = [r.url.params.get("query", "") for r in seen]
    assert not any("node_" in q for q in queries)  # node-wide figures are no job's


def test_cpu_and_memory_from_a_cgroup_exporter() -> None:
    monitoring, _ = service()
    result = run(monitoring, FINISHED)
    cpu, memory = result.figures.cpu, result.figures.memory
    lifetime = WINDOW["end"] - WINDOW["start"]
    assert cpu.value == round(max(values("efficiency_cgroup_cpu")) / (lifetime * 4), 4)
    assert (cpu.source, cpu.exporter, cpu.metric) == (
        "prometheus", "cgroup_exporter", "cgroup_cpu_total_seconds")  # fmt: skip
    # The job's own cgroup (3 GiB), not its batch step's (2 GiB) nor another job's.
    assert memory.value == round(3 * 1024 / 8192, 4)
    assert (memory.source, memory.metric) == ("prometheus", "cgroup_memory_rss_bytes")


def test_a_running_job_without_cgroup_figures_waits_for_accounting() -> None:
    monitoring, _ = service(names_without_cgroups())
    result = run(monitoring, RUNNING)
    assert result.running and result.window is not None and result.window.running
    for figure in (result.figures.cpu, result.figures.memory):
        assert figure.value is None and figure.source is None and figure.why == "job_running"
        assert figure.reason is not None and figure.reason.startswith("Available when the job")
    assert result.figures.gpu_utilisation.source == "prometheus"


def test_prometheus_down_leaves_accounting_and_says_why() -> None:
    monitoring, seen = service(down=True)
    result = run(monitoring, FINISHED)
    assert seen  # it was asked
    for figure in (result.figures.gpu_utilisation, result.figures.gpu_memory):
        assert figure.value is None and figure.why == "prometheus_error"
        assert figure.reason is not None
        assert figure.reason.startswith("Prometheus could not be asked")
        assert "cannot be reached" in figure.reason
    assert (result.figures.cpu.source, result.figures.cpu.value) == ("sacct", 0.1)


def test_monitoring_off_and_a_job_without_gpus() -> None:
    off = run(None, FINISHED)
    assert off.figures.gpu_utilisation.reason == "Monitoring is off: no Prometheus is configured."
    assert off.figures.gpu_utilisation.why == "monitoring_off"
    assert off.figures.memory.source == "sacct" and off.window is None
    monitoring, seen = service(names_without_cgroups())
    no_gpus = run(monitoring, FINISHED, gpus=0)
    assert no_gpus.figures.gpu_utilisation.reason == "The job holds no GPUs."
    assert no_gpus.figures.gpu_memory.why == "no_gpus"
    assert not any(r.url.path.endswith("query_range") for r in seen)


def test_nvidia_gpu_exporter_cannot_name_the_job() -> None:
    names = {n for n in names_without_cgroups() if not n.startswith("DCGM_")}
    monitoring, seen = service(names | {"nvidia_smi_utilization_gpu_ratio"})
    result = run(monitoring, FINISHED)
    reason = result.figures.gpu_utilisation.reason
    assert reason is not None and reason.startswith("nvidia_gpu_exporter does not say")
    assert result.figures.gpu_memory.why == "not_per_job"
    assert not any(r.url.path.endswith("query_range") for r in seen)


def test_fifty_viewers_cost_one_query_per_figure() -> None:
    monitoring, seen = service()

    async def main() -> list[JobEfficiency]:
        return await asyncio.gather(*(measure(monitoring, SACCT, FINISHED, 1)
                                      for _ in range(50)))  # fmt: skip

    results = asyncio.run(main())
    assert len({r.model_dump_json() for r in results}) == 1
    paths = [r.url.path for r in seen]
    assert paths.count("/api/v1/query_range") == 4  # CPU, memory, GPU use, GPU memory
    assert paths.count("/api/v1/label/__name__/values") == 1
