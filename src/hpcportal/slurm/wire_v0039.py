"""Slurm 23.02's JSON (data_parser v0.0.39), decoded strictly by msgspec.

No recording of 23.02 exists in this project: these structs were written from
Slurm's published OpenAPI description of v0.0.39 (the ``v0.0.39_job_info``,
``v0.0.39_node`` and ``v0.0.39_job`` schemas that slurmrestd 23.02 generates) and
from 23.02's data_parser field table. Where the published descriptions of 23.02
releases disagree (sacct's ``priority``, ``time/limit`` and ``array`` numbers are
plain integers in the first and ``{"set", "infinite", "number"}`` in later ones),
the field accepts exactly those two shapes. Every field the portal reads is
required, as in ``wire``; see there for why.
"""

from __future__ import annotations

import msgspec

from hpcportal.slurm.wire import Meta, NoVal

Str = str | None
#: A number 23.02's descriptions give either plainly or as a NoVal object.
IntOrNoVal = int | NoVal


class WireJob(msgspec.Struct, frozen=True):
    """One job of ``squeue --json`` (``v0.0.39_job_info``)."""

    job_id: int
    name: Str
    user_name: Str
    user_id: int
    group_name: Str
    account: Str
    partition: Str
    qos: Str
    job_state: str
    state_reason: Str
    priority: NoVal
    array_job_id: NoVal
    array_task_id: NoVal
    array_task_string: Str
    array_max_tasks: NoVal
    nodes: Str
    node_count: NoVal
    cpus: NoVal
    tasks: NoVal
    memory_per_node: NoVal
    memory_per_cpu: NoVal
    tres_req_str: Str
    tres_alloc_str: Str
    time_limit: NoVal
    submit_time: int
    eligible_time: int
    start_time: int
    end_time: int
    dependency: Str
    #: The raw wait status, as in 22.05.
    exit_code: int
    batch_host: Str
    command: Str
    comment: Str
    current_working_directory: Str
    standard_output: Str
    standard_error: Str
    standard_input: Str


class SqueueOutput(msgspec.Struct, frozen=True):
    jobs: list[WireJob]
    meta: Meta | None = None


class WireNode(msgspec.Struct, frozen=True):
    """One node of ``scontrol --json show nodes`` (``v0.0.39_node``)."""

    name: str
    hostname: Str
    address: Str
    state: list[str]
    partitions: list[str]
    cpus: int
    alloc_cpus: int
    alloc_idle_cpus: int
    cpu_load: NoVal
    real_memory: int
    alloc_memory: int
    free_mem: NoVal
    gres: Str
    gres_used: Str
    features: list[str]
    reason: Str
    reason_set_by_user: Str
    reason_changed_at: int
    boot_time: int
    last_busy: int
    version: Str
    architecture: Str
    operating_system: Str


class NodesOutput(msgspec.Struct, frozen=True):
    nodes: list[WireNode]
    meta: Meta | None = None


class ExitCode(msgspec.Struct, frozen=True):
    status: str
    return_code: int


class AcctArray(msgspec.Struct, frozen=True):
    job_id: int
    task_id: IntOrNoVal
    task: Str


class AcctState(msgspec.Struct, frozen=True):
    current: str
    reason: Str


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
    count: int


class AcctTres(msgspec.Struct, frozen=True):
    allocated: list[Tres]


class AcctComment(msgspec.Struct, frozen=True):
    job: Str


class WireAcctJob(msgspec.Struct, frozen=True):
    """One job of ``sacct --json`` (``v0.0.39_job``)."""

    job_id: int
    name: Str
    user: Str
    group: Str
    account: Str
    partition: Str
    qos: Str
    nodes: Str
    allocation_nodes: int
    array: AcctArray
    state: AcctState
    exit_code: ExitCode
    time: AcctTime
    required: AcctRequired
    tres: AcctTres
    working_directory: Str
    comment: AcctComment


class SacctOutput(msgspec.Struct, frozen=True):
    jobs: list[WireAcctJob]
    meta: Meta | None = None


squeue_decoder = msgspec.json.Decoder(SqueueOutput)
nodes_decoder = msgspec.json.Decoder(NodesOutput)
sacct_decoder = msgspec.json.Decoder(SacctOutput)
