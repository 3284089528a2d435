"""Slurm 23.02's JSON (data_parser v0.0.39), decoded strictly by msgspec.

No recording of 23.02 exists in this project: these structs were written from
Slurm's published OpenAPI description of v0.0.39 (the ``v0.0.39_job_info``,
``v0.0.39_node`` and ``v0.0.39_job`` schemas that slurmrestd 23.02 generates) and
from 23.02's data_parser field table. Where the published descriptions of 23.02
releases disagree (sacct's ``priority``, ``time/limit`` and ``array`` numbers are
plain integers in the first and ``{"set", "infinite", "number"}`` in later ones),
the field accepts exactly those two shapes. Every field the portal reads is
required, as in ``wire``; see there for why. The fields every family shares
come from ``wire``'s base structs; this module adds what 23.02 writes its own way.
"""

from __future__ import annotations

import msgspec

from hpcportal.slurm.wire import (
    AcctJobBase,
    AcctState,
    JobBase,
    Jobs,
    NodeBase,
    Nodes,
    NoVal,
    Str,
)

#: A number 23.02's descriptions give either plainly or as a NoVal object.
IntOrNoVal = int | NoVal


class WireJob(JobBase, frozen=True):
    """One job of ``squeue --json`` (``v0.0.39_job_info``)."""

    job_state: str
    priority: NoVal
    array_job_id: NoVal
    array_task_id: NoVal
    array_max_tasks: NoVal
    node_count: NoVal
    cpus: NoVal
    tasks: NoVal
    memory_per_node: NoVal
    memory_per_cpu: NoVal
    time_limit: NoVal
    submit_time: int
    eligible_time: int
    start_time: int
    end_time: int
    #: The raw wait status, as in 22.05.
    exit_code: int


class WireNode(NodeBase, frozen=True):
    """One node of ``scontrol --json show nodes`` (``v0.0.39_node``)."""

    state: list[str]
    partitions: list[str]
    cpus: int
    alloc_cpus: int
    alloc_idle_cpus: int
    cpu_load: NoVal
    real_memory: int
    alloc_memory: int
    free_mem: NoVal
    features: list[str]
    reason_changed_at: int
    boot_time: int
    last_busy: int
    version: Str


class ExitCode(msgspec.Struct, frozen=True):
    status: str
    return_code: int


class AcctArray(msgspec.Struct, frozen=True):
    job_id: int
    task_id: IntOrNoVal
    task: Str


class CpuTime(msgspec.Struct, frozen=True):
    seconds: int
    microseconds: int


class AcctTime(msgspec.Struct, frozen=True):
    elapsed: int
    eligible: int
    end: int
    start: int
    submission: int
    limit: IntOrNoVal
    total: CpuTime


class AcctRequired(msgspec.Struct, frozen=True, rename={"cpus": "CPUs"}):
    cpus: int
    memory: int


class Tres(msgspec.Struct, frozen=True):
    type: str
    name: Str
    #: Negative for "not measured" (energy without a plugin writes -2).
    count: int


class AcctTres(msgspec.Struct, frozen=True):
    allocated: list[Tres]


class WireAcctJob(AcctJobBase, frozen=True):
    """One job of ``sacct --json`` (``v0.0.39_job``)."""

    allocation_nodes: int
    array: AcctArray
    state: AcctState
    exit_code: ExitCode
    time: AcctTime
    required: AcctRequired
    tres: AcctTres


squeue_decoder = msgspec.json.Decoder(Jobs[WireJob])
nodes_decoder = msgspec.json.Decoder(Nodes[WireNode])
sacct_decoder = msgspec.json.Decoder(Jobs[WireAcctJob])
