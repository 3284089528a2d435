"""Cluster-wide views computed from a snapshot: the summary and partition load.

Both are computed as one person sees the cluster (``services.visibility``): under
``PrivateData=jobs`` job counts cover only the jobs they see, under ``nodes`` the
summary has no nodes, under ``partitions`` no partitions.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from pydantic import BaseModel

from hpcportal.services.snapshot import ClusterSnapshot, SnapshotHealth
from hpcportal.services.visibility import EVERYONE, Visibility, visible_jobs
from hpcportal.slurm.models import Node, Partition
from hpcportal.slurm.states import JobStatus


class SnapshotMeta(BaseModel):
    """Freshness of the data in a response: when it was read and whether it is stale."""

    taken_at: datetime | None
    age_seconds: float | None
    stale: bool
    error: str | None = None

    @classmethod
    def of(cls, health: SnapshotHealth) -> SnapshotMeta:
        return cls(
            taken_at=health.taken_at,
            age_seconds=health.age_seconds,
            stale=health.stale,
            error=health.last_error,
        )


class Capacity(BaseModel):
    allocated: int
    total: int


class PartitionLoad(BaseModel):
    partition: Partition
    nodes_by_status: dict[str, int]
    cpus: Capacity
    gpus: Capacity
    jobs_running: int
    jobs_pending: int


class ClusterSummary(BaseModel):
    nodes_total: int
    nodes_by_status: dict[str, int]
    cpus: Capacity
    gpus: Capacity
    memory_mb: Capacity
    jobs_total: int
    jobs_by_status: dict[str, int]
    partitions: list[PartitionLoad]
    snapshot: SnapshotMeta


def _capacity(nodes: list[Node], used: str, total: str) -> Capacity:
    return Capacity(
        allocated=sum(getattr(n, used) for n in nodes), total=sum(getattr(n, total) for n in nodes)
    )


def partition_loads(snap: ClusterSnapshot, vis: Visibility = EVERYONE) -> list[PartitionLoad]:
    """Each partition with its nodes' state and allocation and its job counts, as ``vis``
    sees them (once per snapshot and ``view_key``)."""
    if vis.hides("partitions"):
        return []
    hide_nodes = vis.hides("nodes")

    def compute() -> list[PartitionLoad]:
        running: Counter[str] = Counter()
        pending: Counter[str] = Counter()
        for job in visible_jobs(snap, vis):
            if job.status is JobStatus.RUNNING:
                running[job.partition] += 1
            elif job.status in (JobStatus.QUEUED, JobStatus.QUEUED_HELD):
                pending[job.partition] += 1
        loads = []
        for part in snap.partitions:
            members = [] if hide_nodes else [n for n in snap.nodes if part.name in n.partitions]
            loads.append(
                PartitionLoad(
                    partition=part,
                    nodes_by_status=dict(Counter(n.status.value for n in members)),
                    cpus=_capacity(members, "cpus_allocated", "cpus_total"),
                    gpus=_capacity(members, "gpus_allocated", "gpus_total"),
                    jobs_running=running[part.name],
                    jobs_pending=pending[part.name],
                )
            )
        return loads

    result: list[PartitionLoad] = snap.memo(f"partition_loads:{vis.view_key}", compute)
    return result


def summarize(
    snap: ClusterSnapshot, health: SnapshotHealth, vis: Visibility = EVERYONE
) -> ClusterSummary:
    """Nodes, capacity, jobs by status and partition load, as ``vis`` sees them."""
    nodes = [] if vis.hides("nodes") else list(snap.nodes)
    jobs = visible_jobs(snap, vis)
    return ClusterSummary(
        nodes_total=len(nodes),
        nodes_by_status=dict(Counter(n.status.value for n in nodes)),
        cpus=_capacity(nodes, "cpus_allocated", "cpus_total"),
        gpus=_capacity(nodes, "gpus_allocated", "gpus_total"),
        memory_mb=_capacity(nodes, "memory_allocated_mb", "memory_total_mb"),
        jobs_total=len(jobs),
        jobs_by_status=snap.memo(
            f"jobs_by_status:{vis.jobs_key}", lambda: dict(Counter(j.status.value for j in jobs))
        ),
        partitions=partition_loads(snap, vis),
        snapshot=SnapshotMeta.of(health),
    )
