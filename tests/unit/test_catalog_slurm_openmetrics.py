"""Slurm's own OpenMetrics in the metric catalog, on answers recorded from the 26.05 dev
cluster's Prometheus (``tests/fixtures/prometheus/record_slurm_openmetrics.py``) while
a job of alice held 2 CPUs of node001."""

from __future__ import annotations

import json
from pathlib import Path

from hpcportal.services.monitoring import catalog

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"
NAMES_2605 = set(
    json.loads((FIXTURES / "slurm_openmetrics_label_values.json").read_bytes())["data"]
)
OLDER_NAMES = set(json.loads((FIXTURES / "label_values.json").read_bytes())["data"])


def test_the_26_05_prometheus_gives_allocation_from_slurm() -> None:
    found = catalog.resolve(catalog.build(), NAMES_2605)
    for name, series in (
        ("cpus_alloc", "slurm_node_cpus_alloc"),
        ("memory_alloc", "slurm_node_memory_alloc_bytes"),
        ("gpus_alloc", "slurm_node_gpus_alloc"),
    ):
        source = found[name].source
        assert source is not None, name
        assert (source.exporter, source.series) == ("slurm_openmetrics", series)
        assert source.job_query is None  # a node's allocation is not one job's
    # The exporters' metrics are still theirs on the same Prometheus.
    assert found["cpu_busy"].source is not None
    assert found["cpu_busy"].source.exporter == "node_exporter"


def test_without_slurm_openmetrics_allocation_has_the_no_exporter_reason() -> None:
    reason = catalog.resolve(catalog.build(), OLDER_NAMES)["cpus_alloc"].reason
    assert reason is not None and "slurm_node_cpus_alloc" in reason


def test_the_query_renders_for_nodes_and_the_recorded_answer_is_per_node() -> None:
    source = catalog.resolve(catalog.build(), NAMES_2605)["cpus_alloc"].source
    assert source is not None
    promql = catalog.render(
        source.node_query, node=catalog.node_matcher("instance", ["node001", "node002"])
    )
    assert promql == (
        'max by (instance) (slurm_node_cpus_alloc{instance=~"(node001|node002)(:[0-9]+)?"})'
    )
    answer = json.loads((FIXTURES / "slurm_openmetrics_cpus_alloc.json").read_bytes())
    by_node = {r["metric"]["instance"]: float(r["value"][1]) for r in answer["data"]["result"]}
    assert by_node["node001"] == 2 and by_node["node002"] == 0
    assert {"gpu001", "viz-node001"} <= set(by_node)
