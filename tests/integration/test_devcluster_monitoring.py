"""The dev cluster's own monitoring, live: its Prometheus (found through
``dev-cluster status``'s ``prometheus_url``) scrapes a node exporter per Slurm node name
and the DCGM exporter stand-in of gpu001, whose ``hpc_job`` label follows a real GPU
job of alice from the cluster's PrologSlurmctld to its EpilogSlurmctld. On a release
with Slurm's own OpenMetrics (26.05), it scrapes slurmctld too, and the metric
catalog's CPUs-allocated panel says what ``scontrol`` says.

Runs on every release (``SLURM_FACING``): the mapping is written by Slurm's own
prolog, which each release runs its own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hpcportal.services.monitoring import catalog
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal

T = TypeVar("T")
SCRAPE_WAIT = 60.0  # a few scrape intervals, and Prometheus' start after `up`


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _eventually(probe: Callable[[], T | None], what: str, timeout: float = SCRAPE_WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(1)


@pytest.fixture(scope="module")
def prometheus(devcluster: dict[str, Any]) -> str:
    url = devcluster["prometheus_url"]
    assert url == devcluster["monitoring"]["prometheus_url"]
    assert url.startswith("http://127.0.0.1:")
    return str(url)


def test_every_exporter_is_an_up_target(prometheus: str, devcluster: dict[str, Any]) -> None:
    nodes = set(devcluster["expected_nodes"])
    assert set(devcluster["monitoring"]["node_exporters"]) == nodes

    def targets() -> dict[tuple[str, str], str] | None:
        answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()
        found = {
            (t["labels"]["job"], t["labels"].get("node", "")): t["health"]
            for t in answer["data"]["activeTargets"]
        }
        wanted = {("node", n) for n in nodes} | {("dcgm", "gpu001")}
        return found if all(found.get(w) == "up" for w in wanted) else None

    found = _eventually(targets, "every node exporter and the GPU stand-in up")
    assert ("hpcportal", "") in found  # the portal's /metrics is scraped (up or not)


def test_node_load_answers_per_node(prometheus: str) -> None:
    def series() -> list[dict[str, Any]] | None:
        return _query(prometheus, 'node_load1{node="node001"}') or None

    result = _eventually(series, "node_load1 of node001")
    assert len(result) == 1
    assert result[0]["metric"]["instance"] == "node001"
    assert float(result[0]["value"][1]) >= 0
    # Every node name is its own series (all report this host).
    names = {s["metric"]["node"] for s in _query(prometheus, "node_load1")}
    assert {"node001", "gpu001", "viz-node001"} <= names


def test_gpu_util_carries_the_job_while_it_runs(
    prometheus: str, devcluster: dict[str, Any], conf: str
) -> None:
    load_dir = Path(devcluster["monitoring"]["gpu_load_dir"])
    job_dir = Path(devcluster["monitoring"]["gpu_job_dir"])
    script = f"echo 87 > {load_dir}/$SLURM_JOB_ID; sleep 600"
    job = slurm_cli.sbatch(
        conf, "alice", "-p", "gpu", "--gres=gpu:1", "-t", "15", "-J", "mon-dc", "--wrap", script
    )
    labelled = f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job}"}}'
    try:
        slurm_cli.wait_running(conf, job, timeout=180)
        mapped = [p for p in job_dir.iterdir() if p.read_text().strip() == str(job)]
        assert len(mapped) == 1, "the prolog maps the job's one GPU"

        def busy() -> list[dict[str, Any]] | None:
            result = _query(prometheus, labelled)
            return result if result and float(result[0]["value"][1]) == 87 else None

        result = _eventually(busy, f"GPU utilisation of job {job} at 87 %")
        assert len(result) == 1
        metric = result[0]["metric"]
        assert metric["gpu"] == mapped[0].name
        assert metric["Hostname"] == "gpu001" and metric["node"] == "gpu001"
        assert metric["UUID"].startswith("GPU-") and metric["modelName"]
        used = _query(prometheus, f'DCGM_FI_DEV_FB_USED{{hpc_job="{job}"}}')
        assert float(used[0]["value"][1]) > 0
    finally:
        slurm_cli.scancel(conf, job, missing_ok=True)

    def ended() -> bool | None:
        return True if slurm_cli.job_state(conf, job) in ("", "COMPLETED", "CANCELLED") else None

    _eventually(ended, f"job {job} ends", timeout=120)

    def unlabelled() -> bool | None:
        return True if not _query(prometheus, labelled) else None

    _eventually(unlabelled, f"job {job}'s hpc_job label gone after it ended")
    assert not [p for p in job_dir.iterdir() if p.read_text().strip() == str(job)]
    assert not (load_dir / str(job)).exists()


def test_portal_metrics_hold_slurm_gauges_equal_to_slurm(portal: RunningPortal, conf: str) -> None:
    """The portal's /metrics (loopback may read it) counts the cluster from its snapshot:
    every node once, and each partition's CPUs and GPUs as Slurm lists its nodes."""
    with portal.client() as client:
        text = client.get("/metrics").text
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    nodes = slurm_cli.all_nodes(conf)
    assert sum(s.value for s in families["hpcportal_slurm_nodes"]) == len(nodes)
    cpus = {
        s.labels["partition"]: s.value
        for s in families["hpcportal_slurm_partition_cpus"]
        if s.labels["kind"] == "total"
    }
    expected: dict[str, float] = {}
    for node in nodes:
        for partition in node["partitions"]:
            expected[partition] = expected.get(partition, 0) + node["cpus"]
    assert cpus == expected
    gpus = {
        s.labels["partition"]: s.value
        for s in families["hpcportal_slurm_partition_gpus"]
        if s.labels["kind"] == "total"
    }
    assert gpus["gpu"] == 2 and gpus["normal"] == 0
    states = {s.labels["state"] for s in families["hpcportal_slurm_jobs"]}
    assert states <= {"queued", "queued_held", "running", "suspended", "completing",
                      "completed", "failed", "cancelled", "timeout", "undetermined"}  # fmt: skip


def _cpu_alloc_by_scontrol(conf: str) -> dict[str, float]:
    """``CPUAlloc`` of every node, from ``scontrol show nodes -o`` (the same on every release)."""
    found: dict[str, float] = {}
    for line in slurm_cli.run(conf, ["scontrol", "show", "nodes", "-o"]).splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "NodeName" in fields:
            found[fields["NodeName"]] = float(fields["CPUAlloc"])
    return found


def test_catalog_cpus_allocated_follows_slurms_own_openmetrics(
    prometheus: str, devcluster: dict[str, Any], conf: str
) -> None:
    """Where slurm.conf turns on ``metrics/openmetrics`` (the dev cluster does when the
    release ships it: 26.05), the catalog picks Slurm's series for ``cpus_alloc`` and
    its query answers, per node, the ``CPUAlloc`` scontrol gives while alice's 2-CPU
    job runs on node001. Without the plugin (22.05, 24.11) the catalog must say that no
    exporter gives the figure, rather than chart something else."""
    has_plugin = "MetricsType=metrics/openmetrics" in Path(conf).read_text()
    names_url = f"{prometheus}/api/v1/label/__name__/values"

    def series_names() -> set[str] | None:
        names = set(httpx.get(names_url, timeout=10).json()["data"])
        return names if not has_plugin or "slurm_node_cpus_alloc" in names else None

    names = _eventually(series_names, "slurmctld's OpenMetrics series in Prometheus")
    resolved = catalog.resolve(catalog.build(), names)["cpus_alloc"]
    if not has_plugin:
        assert resolved.source is None
        assert resolved.reason is not None and "slurm_node_cpus_alloc" in resolved.reason
        return
    source = resolved.source
    assert source is not None and source.exporter == "slurm_openmetrics"
    nodes = sorted(_cpu_alloc_by_scontrol(conf))
    promql = catalog.render(source.node_query, node=catalog.node_matcher("instance", nodes))
    job = slurm_cli.sbatch(
        conf, "alice", "-w", "node001", "-n", "2", "-t", "5", "-J", "mon-om", "--wrap", "sleep 300"
    )
    try:
        slurm_cli.wait_running(conf, job, timeout=120)

        def same_as_scontrol() -> dict[str, float] | None:
            before = _cpu_alloc_by_scontrol(conf)
            panel = {
                r["metric"]["instance"]: float(r["value"][1]) for r in _query(prometheus, promql)
            }
            after = _cpu_alloc_by_scontrol(conf)
            # The same moment: Slurm did not change between the two scontrol readings.
            return panel if before == after == panel else None

        panel = _eventually(same_as_scontrol, "the catalog's CPUs allocated equal scontrol's")
        assert panel["node001"] >= 2
    finally:
        slurm_cli.scancel(conf, job, missing_ok=True)
