"""Slurm's JSON in data_parser v0.0.40 to v0.0.45 (23.11 to 26.05), decoded strictly.

The fields the portal reads have one shape across these six formats (checked
against recordings of v0.0.40-42 from 24.11 and v0.0.42-45 from 26.05 in
``tests/fixtures/slurm``), so one family of structs serves them; ``formats`` lists
the versions it accepts, and a newer one is refused until it has been checked.
Compared with 22.05: states are lists of flags, numbers are ``{"set", "infinite",
"number"}`` objects, exit codes are objects (``status``, ``return_code``,
``signal``), accounting memory is ``memory_per_cpu``/``memory_per_node``, and nodes
come from ``scontrol --json show nodes`` with ``alloc_idle_cpus``, ``free_mem`` and
``version``. Every field the portal reads is required; see ``wire`` for why.
"""

from __future__ import annotations

import msgspec

from hpcportal.slurm.wire import Meta, NoVal

Str = str | None


class Signal(msgspec.Struct, frozen=True):
    id: NoVal
    name: Str


class ExitCode(msgspec.Struct, frozen=True):
    """``status`` (``["SUCCESS"]``, ``["ERROR"]``, ``["SIGNALED"]``), the process's
    own return code, and the signal that ended it."""

    status: list[str]
    return_code: NoVal
    signal: Signal


class WireJob(msgspec.Struct, frozen=True):
    """One job of ``squeue --json``."""

    job_id: int
    name: Str
    user_name: Str
    user_id: int
    group_name: Str
    account: Str
    partition: Str
    qos: Str
    job_state: list[str]
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
    submit_time: NoVal
    eligible_time: NoVal
    start_time: NoVal
    end_time: NoVal
    dependency: Str
    exit_code: ExitCode
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
    """One node of ``scontrol --json show nodes``."""

    name: str
    hostname: Str
    address: Str
    state: list[str]
    partitions: list[str]
    cpus: int
    alloc_cpus: int
    alloc_idle_cpus: int
    cpu_load: int
    real_memory: int
    alloc_memory: int
    free_mem: NoVal
    gres: Str
    gres_used: Str
    features: list[str]
    reason: Str
    reason_set_by_user: Str
    reason_changed_at: NoVal
    boot_time: NoVal
    last_busy: NoVal
    version: Str
    architecture: Str
    operating_system: Str


class NodesOutput(msgspec.Struct, frozen=True):
    nodes: list[WireNode]
    meta: Meta | None = None


class AcctArray(msgspec.Struct, frozen=True):
    job_id: int
    task_id: NoVal
    task: Str


class AcctState(msgspec.Struct, frozen=True):
    current: list[str]
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
    limit: NoVal
    total: CpuTime


class AcctRequired(msgspec.Struct, frozen=True, rename={"cpus": "CPUs"}):
    cpus: int
    memory_per_cpu: NoVal
    memory_per_node: NoVal


class Tres(msgspec.Struct, frozen=True):
    type: str
    name: Str
    #: Negative for "not measured" (energy without a plugin writes -2).
    count: int


class AcctTres(msgspec.Struct, frozen=True):
    allocated: list[Tres]


class AcctComment(msgspec.Struct, frozen=True):
    job: Str


class WireAcctJob(msgspec.Struct, frozen=True):
    """One job of ``sacct --json``."""

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
