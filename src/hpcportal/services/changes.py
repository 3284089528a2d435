"""What changed between two snapshots: the differences the live updates push.

A pure function of two ``ClusterSnapshot``s. Jobs are compared by identity first:
``JobParser`` hands back the *same object* for every job whose Slurm record did not
change, so on a steady queue almost every comparison is one ``is``. Only the rest
are compared field by field (nodes are rebuilt each refresh, so they always are).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import Job, Node


@dataclass(frozen=True, slots=True)
class SnapshotChanges:
    """The differences from ``previous_generation`` to ``generation``."""

    previous_generation: int | None
    generation: int
    #: Jobs that are new or differ in any field, in the current snapshot's order.
    jobs_changed: tuple[Job, ...]
    #: Ids (``Job.id``) of jobs that are no longer in the queue.
    jobs_removed: tuple[str, ...]
    nodes_changed: tuple[Node, ...]
    nodes_removed: tuple[str, ...]
    partitions_changed: bool
    #: The cluster summary (``GET /cluster`` without its freshness block) differs.
    cluster_changed: bool

    @property
    def jobs(self) -> bool:
        return bool(self.jobs_changed or self.jobs_removed)

    @property
    def nodes(self) -> bool:
        return bool(self.nodes_changed or self.nodes_removed)

    @property
    def empty(self) -> bool:
        return not (self.jobs or self.nodes or self.partitions_changed or self.cluster_changed)


def jobs_by_display_id(snap: ClusterSnapshot) -> dict[str, Job]:
    """Jobs by ``Job.id`` only (``jobs_by_id`` also holds plain job-number aliases)."""
    result: dict[str, Job] = snap.memo(
        "changes:jobs_by_display_id", lambda: {j.id: j for j in snap.jobs}
    )
    return result


#: The node fields the cluster summary adds up.
_SUMMARY_NODE_FIELDS = (
    "status", "partitions", "cpus_total", "cpus_allocated", "gpus_total", "gpus_allocated",
    "memory_total_mb", "memory_allocated_mb",
)  # fmt: skip


def _summary_changed(
    previous: ClusterSnapshot,
    current: ClusterSnapshot,
    jobs: list[Job],
    removed_jobs: tuple[str, ...],
    nodes: list[Node],
    removed_nodes: tuple[str, ...],
) -> bool:
    """Whether the cluster summary differs, from the differences alone (no recount).

    It counts jobs by status, running and pending jobs by partition, and node states
    and capacities: a job matters if it is new, gone, or changed status or partition;
    a node if it is new, gone, or changed one of the summed fields.
    """
    if removed_jobs or removed_nodes or previous.partitions != current.partitions:
        return True
    if (previous.private_data, previous.roles) != (current.private_data, current.roles):
        return True  # who sees which jobs and nodes changed (services.visibility)
    before = jobs_by_display_id(previous)
    for job in jobs:
        old = before.get(job.id)
        if old is None or (old.status, old.partition) != (job.status, job.partition):
            return True
    for node in nodes:
        old_node = previous.nodes_by_name.get(node.name)
        if old_node is None or any(
            getattr(old_node, f) != getattr(node, f) for f in _SUMMARY_NODE_FIELDS
        ):
            return True
    return False


def _changed_jobs(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> list[Job]:
    before = jobs_by_display_id(previous) if previous is not None else {}
    changed: list[Job] = []
    for job in current.jobs:
        old = before.get(job.id)
        if old is job:  # the parser reused the model: nothing changed
            continue
        if old is None or old != job:
            changed.append(job)
    return changed


def _changed_nodes(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> list[Node]:
    before = previous.nodes_by_name if previous is not None else {}
    return [n for n in current.nodes if (old := before.get(n.name)) is not n and old != n]


def compute_changes(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> SnapshotChanges:
    """The differences from ``previous`` (``None``: nothing known, all is new) to ``current``."""
    if previous is None:
        return SnapshotChanges(
            previous_generation=None,
            generation=current.generation,
            jobs_changed=current.jobs,
            jobs_removed=(),
            nodes_changed=current.nodes,
            nodes_removed=(),
            partitions_changed=True,
            cluster_changed=True,
        )
    now_ids = jobs_by_display_id(current)
    removed_jobs = tuple(j.id for j in previous.jobs if j.id not in now_ids)
    removed_nodes = tuple(n.name for n in previous.nodes if n.name not in current.nodes_by_name)
    jobs = _changed_jobs(previous, current)
    nodes = _changed_nodes(previous, current)
    return SnapshotChanges(
        previous_generation=previous.generation,
        generation=current.generation,
        jobs_changed=tuple(jobs),
        jobs_removed=removed_jobs,
        nodes_changed=tuple(nodes),
        nodes_removed=removed_nodes,
        partitions_changed=previous.partitions != current.partitions,
        cluster_changed=_summary_changed(
            previous, current, jobs, removed_jobs, nodes, removed_nodes
        ),
    )
