"""Slurm gauges in the portal's ``/metrics``, read from the shared snapshot.

Each scrape reads the snapshot the refresher already has (``SnapshotService.latest``),
never Slurm, so a Prometheus keeping the cluster's history costs slurmctld nothing.
The figures of one snapshot are computed once however often it is scraped
(``ClusterSnapshot.memo``). Before the first snapshot there are no series.

Label sets are bounded by the cluster's configuration, never by its workload:

- ``hpcportal_slurm_nodes{state}`` — nodes by state (``NodeStatus``: idle, mixed,
  allocated, drained, down, …; each state always present, 0 when none);
- ``hpcportal_slurm_partition_cpus{partition,kind}`` and
  ``hpcportal_slurm_partition_gpus{partition,kind}`` — ``kind`` ``total`` or
  ``allocated``, summed over the partition's nodes (a node in two partitions counts in
  both);
- ``hpcportal_slurm_jobs{partition,account,state}`` — jobs in the queue by partition,
  account and state (``JobStatus``). A pending job offered to several partitions, or a
  partition the snapshot does not list, counts as ``partition="other"``; a job
  without an account as ``account="none"``. Array tasks count one each, a pending
  array's record once.

With several replicas every replica exports the same figures (followers serve the
leader's snapshot); query them with ``max by (...)`` or scrape one replica.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric

from hpcportal.slurm.states import JobStatus, NodeStatus

if TYPE_CHECKING:
    from hpcportal.services.snapshot import ClusterSnapshot

OTHER_PARTITION = "other"
NO_ACCOUNT = "none"
MEMO_KEY = "slurm_gauges"


@dataclass(frozen=True)
class SlurmGauges:
    """The figures of one snapshot, ready to expose."""

    nodes: dict[str, int]
    cpus: dict[tuple[str, str], int]
    gpus: dict[tuple[str, str], int]
    jobs: dict[tuple[str, str, str], int]


def gauges_of(snapshot: ClusterSnapshot) -> SlurmGauges:
    """Count what the snapshot holds (pure; the collector memoizes it per snapshot)."""
    nodes = {status.value: 0 for status in NodeStatus}
    partitions = [p.name for p in snapshot.partitions]
    cpus = {(p, kind): 0 for p in partitions for kind in ("total", "allocated")}
    gpus = dict(cpus)
    for node in snapshot.nodes:
        nodes[node.status.value] += 1
        for partition in node.partitions:
            if (partition, "total") not in cpus:
                continue  # a partition the snapshot does not list: not a label
            cpus[partition, "total"] += node.cpus_total
            cpus[partition, "allocated"] += node.cpus_allocated
            gpus[partition, "total"] += node.gpus_total
            gpus[partition, "allocated"] += node.gpus_allocated
    known = set(partitions)
    jobs: Counter[tuple[str, str, str]] = Counter()
    for job in snapshot.jobs:
        partition = job.partition if job.partition in known else OTHER_PARTITION
        jobs[partition, job.account or NO_ACCOUNT, JobStatus(job.status).value] += 1
    return SlurmGauges(nodes=nodes, cpus=cpus, gpus=gpus, jobs=dict(jobs))


class SnapshotCollector:
    """A prometheus_client collector over whatever snapshot ``source`` returns."""

    def __init__(self) -> None:
        self._source: Callable[[], ClusterSnapshot | None] = lambda: None

    def follow(self, source: Callable[[], ClusterSnapshot | None]) -> None:
        """Read from ``source`` from now on (the process's latest ``SnapshotService``)."""
        self._source = source

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unknown until a scrape: no checks against fixed names

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        if snapshot is None:
            return
        figures: SlurmGauges = snapshot.memo(MEMO_KEY, lambda: gauges_of(snapshot))
        nodes = GaugeMetricFamily(
            "hpcportal_slurm_nodes", "Slurm nodes by state, from the snapshot.", labels=["state"]
        )
        for state, count in sorted(figures.nodes.items()):
            nodes.add_metric([state], count)
        yield nodes
        for name, values, what in (
            ("hpcportal_slurm_partition_cpus", figures.cpus, "CPUs"),
            ("hpcportal_slurm_partition_gpus", figures.gpus, "GPUs"),
        ):
            family = GaugeMetricFamily(
                name,
                f"{what} of each partition's nodes, total or allocated, from the snapshot.",
                labels=["partition", "kind"],
            )
            for (partition, kind), count in sorted(values.items()):
                family.add_metric([partition, kind], count)
            yield family
        jobs = GaugeMetricFamily(
            "hpcportal_slurm_jobs",
            "Jobs in the queue by partition, account and state, from the snapshot.",
            labels=["partition", "account", "state"],
        )
        for (partition, account, state), count in sorted(figures.jobs.items()):
            jobs.add_metric([partition, account, state], count)
        yield jobs


#: Registered once per process with the other metrics; ``SnapshotService`` points it
#: at its snapshot.
SLURM_GAUGES = SnapshotCollector()
REGISTRY.register(SLURM_GAUGES)
