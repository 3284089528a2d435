"""The dev cluster turns on Slurm's own OpenMetrics only where the release ships the
plugin, and then has its Prometheus scrape slurmctld's paths with the node label
copied into ``instance``."""

from __future__ import annotations

from pathlib import Path

import yaml

from hpcportal.devcluster.monitoring import (
    SLURMCTLD_METRICS_PATHS,
    has_openmetrics,
    render_prometheus_yml,
)
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import Slot, cluster_nodes, render_slurm_conf


def test_the_plugin_is_looked_for_in_the_releases_plugin_dir(tmp_path: Path) -> None:
    assert not has_openmetrics(None)  # the host's 22.05 has no root to look in
    assert not has_openmetrics(tmp_path)  # e.g. trixie's 24.11
    (tmp_path / "metrics_openmetrics.so").write_bytes(b"")
    assert has_openmetrics(tmp_path)


def test_slurm_conf_names_the_plugin_only_when_asked(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    nodes = cluster_nodes(include_gpu=False)
    assert "MetricsType" not in render_slurm_conf(layout, "h", nodes)
    text = render_slurm_conf(layout, "h", nodes, openmetrics=True)
    assert "\nMetricsType=metrics/openmetrics\n" in text


def test_prometheus_scrapes_slurmctld_paths_only_when_it_has_them() -> None:
    slot = Slot(1)
    nodes = cluster_nodes(True, slot)
    plain = yaml.safe_load(render_prometheus_yml(nodes, slot, 5, "h:1"))
    assert not [j for j in plain["scrape_configs"] if j["job_name"].startswith("slurmctld")]
    jobs = {
        j["job_name"]: j
        for j in yaml.safe_load(
            render_prometheus_yml(nodes, slot, 5, "h:1", slurmctld_metrics=True)
        )["scrape_configs"]
    }
    slurmctld = [j for name, j in jobs.items() if name.startswith("slurmctld_")]
    assert sorted(j["metrics_path"] for j in slurmctld) == sorted(SLURMCTLD_METRICS_PATHS)
    for job in slurmctld:
        assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{slot.slurmctld_port}"]
        relabel = job["metric_relabel_configs"][0]
        assert relabel["source_labels"] == ["node"] and relabel["target_label"] == "instance"
