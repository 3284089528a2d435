"""Nodes in the admin console: their states and reasons, and drain/down/resume/reboot.

Reads come from the snapshot (state, reason, who set it and when, the jobs on each
node); changes are planned here as ``slurm.admin_actions`` requests and applied by
``services.admin.plan``. A plan names the running jobs a change hits and the commands
that restore each node's previous state: a drained node goes back to drained with its
old reason, a down one to down, any other to resume. A reboot is not revertible.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import InvalidInput, NotFound
from hpcportal.services.admin.plan import AffectedJob, AffectedJobView, Plan, vars_of
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import hostlist
from hpcportal.slurm.admin_actions import (
    AdminCommand,
    DownNodes,
    DrainNodes,
    NextState,
    NodeRequest,
    RebootNodes,
    ResumeNodes,
    check_nodes,
    node_commands,
)
from hpcportal.slurm.models import Node
from hpcportal.slurm.states import JobStatus, NodeStatus

NodeAction = Literal["drain", "down", "resume", "reboot"]
#: Reasons offered on the page (Slurm stores the text as given; any one line will do).
REASON_TEMPLATES = (
    "Hardware fault: ",
    "Maintenance: ",
    "Memory errors (ECC)",
    "Disk or filesystem problem",
    "Network problem",
    "Firmware or OS update",
)
_ON_NODE = frozenset({JobStatus.RUNNING, JobStatus.SUSPENDED, JobStatus.COMPLETING})
_DRAINED = frozenset({NodeStatus.DRAINING, NodeStatus.DRAINED})


class NodeChange(BaseModel):
    """A change to one node or a hostlist (``node[001-002]``)."""

    action: NodeAction
    nodes: str
    reason: str | None = None
    next_state: NextState = "resume"


class NodeRow(BaseModel):
    """One node as the admin console lists it."""

    name: str
    state: str
    status: str
    flags: list[str]
    partitions: list[str]
    reason: str | None
    reason_set_by: str | None
    reason_time: datetime | None
    cpus_total: int
    cpus_allocated: int
    jobs: list[AffectedJobView]


def _affected(snap: ClusterSnapshot, names: set[str]) -> tuple[AffectedJob, ...]:
    return tuple(
        AffectedJob(str(job.id), job.user, job.name, job.state, job.nodes)
        for job in snap.jobs
        if job.status in _ON_NODE and names.intersection(job.node_names)
    )


def node_rows(snap: ClusterSnapshot) -> list[NodeRow]:
    """Every node with its state, reason (who, when) and the jobs on it."""
    return [
        NodeRow(
            name=node.name,
            state=node.state,
            status=node.status.value,
            flags=list(node.flags),
            partitions=list(node.partitions),
            reason=node.reason,
            reason_set_by=node.reason_set_by,
            reason_time=node.reason_time,
            cpus_total=node.cpus_total,
            cpus_allocated=node.cpus_allocated,
            jobs=[AffectedJobView(**vars_of(j)) for j in _affected(snap, {node.name})],
        )
        for node in snap.nodes
    ]


def _request(change: NodeChange) -> NodeRequest:
    reason = change.reason or ""
    if change.action == "drain":
        return DrainNodes(change.nodes, reason)
    if change.action == "down":
        return DownNodes(change.nodes, reason)
    if change.action == "resume":
        return ResumeNodes(change.nodes)
    return RebootNodes(change.nodes, reason, change.next_state)


def _restore(node: Node) -> AdminCommand:
    """The command that puts ``node`` back as it is now."""
    reason = node.reason or "restored by the portal"
    if node.status in _DRAINED:
        return node_commands(DrainNodes(node.name, reason))[0]
    if node.status == NodeStatus.DOWN:
        return node_commands(DownNodes(node.name, reason))[0]
    return node_commands(ResumeNodes(node.name))[0]


def _previous(node: Node) -> dict[str, object]:
    when = node.reason_time.isoformat() if node.reason_time else None
    return {
        "state": node.state,
        "status": node.status.value,
        "reason": node.reason,
        "reason_set_by": node.reason_set_by,
        "reason_time": when,
    }


_NOTES: dict[NodeAction, str] = {
    "drain": "Running jobs finish; no new job starts. The node shows DRAINING until idle.",
    "down": "The node is taken out now: Slurm requeues or kills the jobs listed.",
    "resume": "Slurm refuses to resume a node that is neither drained nor down.",
    "reboot": "Needs RebootProgram in slurm.conf; ASAP drains the node until it reboots.",
}


def plan_nodes(
    change: NodeChange, snap: ClusterSnapshot, fresh: Sequence[Node] | None = None
) -> Plan:
    """The plan of ``change`` on the cluster as ``snap`` shows it.

    ``fresh`` are the nodes as Slurm lists them now (``adapter.nodes()``): routers pass
    them so the previous state a revert restores is not a snapshot seconds old; the
    affected jobs come from the snapshot.
    """
    names = hostlist.expand(check_nodes(change.nodes))
    by_name = {n.name: n for n in fresh} if fresh is not None else snap.nodes_by_name
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise NotFound(f"No such node: {', '.join(unknown[:5])}.")
    if len(names) > 512:
        raise InvalidInput("Change at most 512 nodes at once.")
    nodes = [by_name[n] for n in names]
    commands = node_commands(_request(change))
    revert = () if change.action == "reboot" else tuple(_restore(n) for n in nodes)
    hit = _affected(snap, set(names)) if change.action != "resume" else ()
    what = f"{change.action} {change.nodes}"
    if change.reason and change.action != "resume":
        what += f": {change.reason.strip()}"
    return Plan(
        kind=f"node.{change.action}",
        target=f"node:{change.nodes}",
        summary=what,
        commands=commands,
        affects=hit,
        previous={n.name: _previous(n) for n in nodes},
        revert=revert,
        notes=(_NOTES[change.action],),
    )
