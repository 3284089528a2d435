"""One table from Slurm's state names to the portal's states.

Like ``ood_core``'s state table: every Slurm state we know maps to a small set the UI
understands; anything else is ``UNDETERMINED`` rather than a guess.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    QUEUED_HELD = "queued_held"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    UNDETERMINED = "undetermined"


class NodeStatus(StrEnum):
    IDLE = "idle"
    MIXED = "mixed"
    ALLOCATED = "allocated"
    COMPLETING = "completing"
    DRAINING = "draining"
    DRAINED = "drained"
    DOWN = "down"
    RESERVED = "reserved"
    MAINTENANCE = "maintenance"
    FUTURE = "future"
    UNDETERMINED = "undetermined"


JOB_STATES: dict[str, JobStatus] = {
    "PENDING": JobStatus.QUEUED,
    "CONFIGURING": JobStatus.QUEUED,
    "REQUEUED": JobStatus.QUEUED,
    "REQUEUE_FED": JobStatus.QUEUED,
    "REQUEUE_HOLD": JobStatus.QUEUED_HELD,
    "SPECIAL_EXIT": JobStatus.QUEUED_HELD,
    "RESV_DEL_HOLD": JobStatus.QUEUED_HELD,
    "RUNNING": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.SUSPENDED,
    "STOPPED": JobStatus.SUSPENDED,
    "PREEMPTED": JobStatus.SUSPENDED,
    "COMPLETING": JobStatus.COMPLETING,
    "COMPLETED": JobStatus.COMPLETED,
    "CANCELLED": JobStatus.CANCELLED,
    "REVOKED": JobStatus.CANCELLED,
    "DEADLINE": JobStatus.TIMEOUT,
    "TIMEOUT": JobStatus.TIMEOUT,
    "FAILED": JobStatus.FAILED,
    "BOOT_FAIL": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED,
    "OUT_OF_MEMORY": JobStatus.FAILED,
}

# Slurm says why a pending job waits; these reasons mean someone holds it.
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin", "JobHeld"})

NODE_BASE_STATES: dict[str, NodeStatus] = {
    "idle": NodeStatus.IDLE,
    "mixed": NodeStatus.MIXED,
    "allocated": NodeStatus.ALLOCATED,
    "completing": NodeStatus.COMPLETING,
    "down": NodeStatus.DOWN,
    "error": NodeStatus.DOWN,
    "future": NodeStatus.FUTURE,
    "unknown": NodeStatus.UNDETERMINED,
}


def job_status(slurm_state: str, reason: str | None = None) -> JobStatus:
    """Map a job state (``"PENDING"``, ``"CANCELLED by 1001"``...) to a ``JobStatus``."""
    base = slurm_state.split(" ", 1)[0].upper() if slurm_state else ""
    status = JOB_STATES.get(base, JobStatus.UNDETERMINED)
    if status is JobStatus.QUEUED and reason in HELD_REASONS:
        return JobStatus.QUEUED_HELD
    return status


def node_status(state: str, flags: list[str] | tuple[str, ...] = ()) -> NodeStatus:
    """Map a node's base state plus flags to one ``NodeStatus``.

    Flags win over the base state where they change what a person should know:
    a drained idle node is "drained", a draining busy node is "draining".
    """
    head, *more = state.split("+")
    base = NODE_BASE_STATES.get(head.lower(), NodeStatus.UNDETERMINED)
    upper = {f.upper() for f in (*flags, *more)}
    if base is NodeStatus.DOWN or ("NOT_RESPONDING" in upper and base is NodeStatus.IDLE):
        return NodeStatus.DOWN
    if "MAINTENANCE" in upper:
        return NodeStatus.MAINTENANCE
    if "DRAIN" in upper:
        busy = base in (NodeStatus.MIXED, NodeStatus.ALLOCATED, NodeStatus.COMPLETING)
        return NodeStatus.DRAINING if busy else NodeStatus.DRAINED
    if "RESERVED" in upper and base is NodeStatus.IDLE:
        return NodeStatus.RESERVED
    return base
