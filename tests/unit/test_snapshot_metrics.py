"""Slurm gauges in /metrics, counted from a snapshot of recorded 22.05 output (no Slurm)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.snapshot_metrics import SLURM_GAUGES, gauges_of
from hpcportal.slurm import parse
from hpcportal.slurm.states import JobStatus, NodeStatus
from tests.unit.slurm_fixtures import recorded

GAUGES = {
    "hpcportal_slurm_nodes",
    "hpcportal_slurm_partition_cpus",
    "hpcportal_slurm_partition_gpus",
    "hpcportal_slurm_jobs",
}


def _snapshot() -> ClusterSnapshot:
    jobs = parse.parse_squeue(recorded("22.05/squeue.json"))
    nodes = parse.parse_sinfo(recorded("22.05/sinfo.json"))
    partitions = parse.parse_partitions(recorded("scontrol_partitions.txt"))
    return ClusterSnapshot.build(1, 0.1, jobs, nodes, partitions)


@pytest.fixture
def following() -> Iterator[ClusterSnapshot]:
    """The process-wide collector reading a recorded snapshot, as SnapshotService makes it."""
    snapshot = _snapshot()
    SLURM_GAUGES.follow(lambda: snapshot)
    try:
        yield snapshot
    finally:
        SLURM_GAUGES.follow(lambda: None)


def _scraped() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """What /metrics would answer (the default registry), read by Prometheus' parser."""
    families = text_string_to_metric_families(generate_latest(REGISTRY).decode())
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in families
        if family.name in GAUGES
    }


def test_recorded_snapshot_counts(following: ClusterSnapshot) -> None:
    scraped = _scraped()
    nodes = {dict(k)["state"]: v for k, v in scraped["hpcportal_slurm_nodes"].items()}
    assert set(nodes) == {s.value for s in NodeStatus}  # every state, 0 when none
    assert (nodes["idle"], nodes["mixed"], nodes["allocated"], nodes["down"]) == (3, 2, 1, 0)

    def by_partition(name: str) -> dict[tuple[str, str], float]:
        return {(dict(k)["partition"], dict(k)["kind"]): v for k, v in scraped[name].items()}

    cpus = by_partition("hpcportal_slurm_partition_cpus")
    assert cpus == {
        ("normal", "total"): 16,
        ("normal", "allocated"): 5,
        ("gpu", "total"): 4,
        ("gpu", "allocated"): 1,
        ("viz", "total"): 4,
        ("viz", "allocated"): 0,
    }
    gpus = by_partition("hpcportal_slurm_partition_gpus")
    assert gpus[("gpu", "total")] == 2 and gpus[("gpu", "allocated")] == 1
    assert gpus[("normal", "total")] == 0

    jobs = {
        (dict(k)["partition"], dict(k)["account"], dict(k)["state"]): v
        for k, v in scraped["hpcportal_slurm_jobs"].items()
    }
    assert jobs[("normal", "research", "running")] == 4
    assert jobs[("gpu", "research", "running")] == 1
    assert jobs[("normal", "physics", "queued_held")] == 1
    assert sum(jobs.values()) == len(following.jobs) == 10


def test_bounded_labels_for_odd_jobs() -> None:
    snapshot = _snapshot()
    job = snapshot.jobs[0]
    odd = [
        job.model_copy(update={"id": "9001", "partition": "normal,gpu", "account": None}),
        job.model_copy(update={"id": "9002", "partition": "gone", "status": JobStatus.QUEUED}),
    ]
    built = ClusterSnapshot.build(
        2, 0.1, [*snapshot.jobs, *odd], list(snapshot.nodes), list(snapshot.partitions)
    )
    jobs = gauges_of(built).jobs
    assert jobs[("other", "none", job.status.value)] == 1
    assert jobs[("other", job.account or "none", "queued")] == 1
    assert {partition for partition, _, _ in jobs} <= {"normal", "gpu", "viz", "other"}


def test_no_series_before_the_first_snapshot() -> None:
    SLURM_GAUGES.follow(lambda: None)
    assert _scraped() == {}


def test_one_count_per_snapshot(following: ClusterSnapshot) -> None:
    _scraped()
    first = following.derived["slurm_gauges"]
    _scraped()
    assert following.derived["slurm_gauges"] is first
