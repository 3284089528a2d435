"""The dev cluster's monitoring: Prometheus' config, the GPU job mapping scripts, and the
DCGM exporter stand-in's exposition read back by prometheus_client's own parser."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hpcportal.devcluster.cluster import only_reconfigurable_changes
from hpcportal.devcluster.dcgm_standin import METRICS, StandinCollector, registry_for, serve
from hpcportal.devcluster.monitoring import (
    check_target,
    render_epilog,
    render_prolog,
    render_prometheus_yml,
)
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import MAX_SLOTS, Slot, cluster_nodes, render_slurm_conf

DCGM_LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"}


def test_prometheus_yml_labels_every_node_exporter_as_its_node() -> None:
    slot = Slot(1)
    text = render_prometheus_yml(cluster_nodes(True, slot), slot, 5, "127.0.0.1:8090")
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    nodes = {c["labels"]["node"]: c["targets"] for c in jobs["node"]}
    assert set(nodes) == {n.name for n in cluster_nodes(True, slot)}
    assert nodes["node001"] == [f"127.0.0.1:{slot.node_exporter_port(0)}"]
    assert all(c["labels"]["instance"] == c["labels"]["node"] for c in jobs["node"])
    assert jobs["dcgm"] == [
        {
            "targets": [f"127.0.0.1:{slot.dcgm_port}"],
            "labels": {"node": "gpu001", "instance": "gpu001"},
        }
    ]
    assert jobs["hpcportal"][0]["targets"] == ["127.0.0.1:8090"]
    without_gpu = yaml.safe_load(render_prometheus_yml(cluster_nodes(False), Slot(0), 5, "h:1"))
    assert "dcgm" not in {job["job_name"] for job in without_gpu["scrape_configs"]}


def test_monitoring_ports_are_the_slots_own() -> None:
    used = [port for i in range(MAX_SLOTS) for port in Slot(i).ports()]
    assert len(used) == len(set(used))
    assert (Slot(0).prometheus_port, Slot(2).prometheus_port) == (19000, 19020)


@pytest.mark.parametrize("bad", ["nohost", "host:", ":80", "h:0", "h:70000", "h'x:80", "a b:1"])
def test_portal_target_must_be_host_and_port(bad: str) -> None:
    with pytest.raises(ValueError):
        check_target(bad)
    assert check_target("127.0.0.1:08080") == "127.0.0.1:8080"


def test_prolog_lines_alone_are_applied_without_a_node_restart() -> None:
    layout = Layout(Path("/srv/dc"))
    nodes = cluster_nodes(True)
    before = render_slurm_conf(layout, "h", nodes)
    after = render_slurm_conf(layout, "h", nodes, prolog=(layout.prolog, layout.epilog))
    assert f"PrologSlurmctld={layout.prolog}" in after
    assert only_reconfigurable_changes(before, after)
    assert not only_reconfigurable_changes(before, render_slurm_conf(layout, "h", nodes[:-1]))


def _run_script(text: str, tmp: Path, env: dict[str, str]) -> None:
    script = tmp / "script"
    script.write_text(text)
    script.chmod(0o755)
    subprocess.run([str(script)], env={"PATH": os.environ["PATH"], **env}, check=True)


def test_prolog_and_epilog_keep_dcgms_job_mapping(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.gpu_job_dir.mkdir()
    layout.gpu_load_dir.mkdir()
    job = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "gpu001", "SLURM_JOB_GPUS": "0-1"}
    _run_script(render_prolog(layout, ["gpu001"]), tmp_path, job)
    assert sorted(p.name for p in layout.gpu_job_dir.iterdir()) == ["0", "1"]
    assert (layout.gpu_job_dir / "1").read_text() == "42\n"
    other = {**job, "SLURM_JOB_ID": "43", "SLURM_JOB_NODELIST": "node001"}
    _run_script(render_prolog(layout, ["gpu001"]), tmp_path, other)  # no GPU node: nothing
    assert (layout.gpu_job_dir / "0").read_text() == "42\n"
    (layout.gpu_load_dir / "42").write_text("90\n")
    _run_script(render_epilog(layout, ["gpu001"]), tmp_path, {"SLURM_JOB_ID": "43"})
    assert len(list(layout.gpu_job_dir.iterdir())) == 2  # another job's end keeps them
    _run_script(render_epilog(layout, ["gpu001"]), tmp_path, {"SLURM_JOB_ID": "42"})
    assert list(layout.gpu_job_dir.iterdir()) == []
    assert list(layout.gpu_load_dir.iterdir()) == []


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    jobs, loads = tmp_path / "jobs", tmp_path / "load"
    jobs.mkdir()
    loads.mkdir()
    server = serve(0, registry_for(StandinCollector("gpu001", 2, jobs, loads)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", jobs, loads
    finally:
        server.shutdown()
        server.server_close()


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    answer = httpx.get(url, timeout=5)
    answer.raise_for_status()
    text = answer.text
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_standin_speaks_dcgm_exporters_names_and_labels(
    standin: tuple[str, Path, Path],
) -> None:
    url, jobs, loads = standin
    idle = _scrape(url)
    assert set(idle) == {name for name, _ in METRICS}
    util = idle["DCGM_FI_DEV_GPU_UTIL"]
    assert [labels["gpu"] for labels, _ in util] == ["0", "1"]
    assert all(set(labels) == DCGM_LABELS and value == 0 for labels, value in util)
    assert {labels["Hostname"] for labels, _ in util} == {"gpu001"}
    assert len({labels["UUID"] for labels, _ in util}) == 2

    (jobs / "1").write_text("77\n")
    (loads / "77").write_text("80\n")
    busy = _scrape(url)
    by_gpu = {labels["gpu"]: (labels, value) for labels, value in busy["DCGM_FI_DEV_GPU_UTIL"]}
    assert by_gpu["1"] == ({**by_gpu["1"][0], "hpc_job": "77"}, 80.0)
    assert "hpc_job" not in by_gpu["0"][0]
    used = {labels["gpu"]: value for labels, value in busy["DCGM_FI_DEV_FB_USED"]}
    free = {labels["gpu"]: value for labels, value in busy["DCGM_FI_DEV_FB_FREE"]}
    assert used["0"] == 0 and used["1"] > 0
    assert used["1"] + free["1"] == free["0"]
    temp = {labels["gpu"]: value for labels, value in busy["DCGM_FI_DEV_GPU_TEMP"]}
    power = {labels["gpu"]: value for labels, value in busy["DCGM_FI_DEV_POWER_USAGE"]}
    assert temp["1"] > temp["0"] and power["1"] > power["0"]

    (jobs / "1").unlink()
    after = _scrape(url)
    assert all("hpc_job" not in labels for labels, _ in after["DCGM_FI_DEV_GPU_UTIL"])
