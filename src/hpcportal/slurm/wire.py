"""Slurm's JSON output as it arrives, decoded strictly by msgspec.

These structs name only the fields the portal uses; msgspec skips the rest while
decoding, which is several times faster than ``json.loads`` plus validation on the
30+ MB that ``squeue --json`` prints for 10,000 jobs. Shapes are Slurm 22.05's
(OpenAPI v0.0.38); numbers may also arrive as the ``{"set", "infinite", "number"}``
objects of later versions. Nothing outside ``hpcportal.slurm`` imports this module.
"""

from __future__ import annotations

import msgspec


class NoVal(msgspec.Struct, frozen=True):
    """A number that may be unset or infinite (Slurm >= 23.02)."""

    set: bool = True
    infinite: bool = False
    number: int | float = 0


Num = int | NoVal | None
FNum = float | NoVal | None
State = str | list[str] | None
Str = str | None


class WireJob(msgspec.Struct, frozen=True):
    job_id: int
    name: Str = None
    user_name: Str = None
    user_id: int | None = None
    group_name: Str = None
    account: Str = None
    partition: Str = None
    qos: Str = None
    job_state: State = None
    state_reason: Str = None
    priority: Num = None
    array_job_id: Num = 0
    array_task_id: Num = None
    array_task_string: Str = None
    array_max_tasks: Num = 0
    nodes: Str = None
    node_count: Num = 0
    cpus: Num = 0
    tasks: Num = 0
    memory_per_node: Num = None
    memory_per_cpu: Num = None
    tres_req_str: Str = None
    tres_alloc_str: Str = None
    time_limit: Num = None
    submit_time: Num = 0
    eligible_time: Num = 0
    start_time: Num = 0
    end_time: Num = 0
    dependency: Str = None
    exit_code: Num = None
    batch_host: Str = None
    command: Str = None
    comment: Str = None
    current_working_directory: Str = None
    standard_output: Str = None
    standard_error: Str = None
    standard_input: Str = None


class SqueueOutput(msgspec.Struct, frozen=True):
    jobs: list[WireJob]


class WireNode(msgspec.Struct, frozen=True):
    name: str
    hostname: Str = None
    address: Str = None
    state: State = None
    state_flags: list[str] | None = None
    partitions: list[str] | None = None
    cpus: Num = 0
    alloc_cpus: Num = 0
    idle_cpus: Num = 0
    cpu_load: Num = 0
    real_memory: Num = 0
    alloc_memory: Num = 0
    free_memory: Num = None
    gres: Str = None
    gres_used: Str = None
    features: str | list[str] | None = None
    reason: Str = None
    reason_set_by_user: str | None = None
    reason_changed_at: Num = 0
    boot_time: Num = 0
    last_busy: Num = 0
    slurmd_version: Str = None
    architecture: Str = None
    operating_system: Str = None


class SinfoOutput(msgspec.Struct, frozen=True):
    nodes: list[WireNode]


class ExitCode(msgspec.Struct, frozen=True):
    status: str | list[str] | None = None
    return_code: Num = None


class AcctArray(msgspec.Struct, frozen=True):
    job_id: Num = 0
    task_id: Num = None
    task: str | None = None


class AcctState(msgspec.Struct, frozen=True):
    current: State = None
    reason: Str = None


class CpuTime(msgspec.Struct, frozen=True):
    seconds: Num = 0
    microseconds: Num = 0


class AcctTime(msgspec.Struct, frozen=True):
    elapsed: Num = 0
    eligible: Num = 0
    end: Num = 0
    start: Num = 0
    submission: Num = 0
    suspended: Num = 0
    limit: Num = None
    total: CpuTime | None = None


class AcctRequired(msgspec.Struct, frozen=True, rename={"cpus": "CPUs"}):
    cpus: Num = 0
    memory: Num = 0


class Tres(msgspec.Struct, frozen=True):
    type: str
    name: str | None = None
    count: Num = None


class AcctTres(msgspec.Struct, frozen=True):
    allocated: list[Tres] | None = None
    requested: list[Tres] | None = None


class AcctComment(msgspec.Struct, frozen=True):
    job: Str = None


class WireAcctJob(msgspec.Struct, frozen=True):
    job_id: int
    name: Str = None
    user: Str = None
    group: Str = None
    account: Str = None
    partition: Str = None
    qos: Str = None
    cluster: Str = None
    nodes: Str = None
    allocation_nodes: Num = 0
    priority: Num = None
    array: AcctArray | None = None
    state: AcctState | None = None
    exit_code: ExitCode | None = None
    derived_exit_code: ExitCode | None = None
    time: AcctTime | None = None
    required: AcctRequired | None = None
    tres: AcctTres | None = None
    working_directory: Str = None
    comment: AcctComment | None = None


class SacctOutput(msgspec.Struct, frozen=True):
    jobs: list[WireAcctJob]


squeue_decoder = msgspec.json.Decoder(SqueueOutput)
sinfo_decoder = msgspec.json.Decoder(SinfoOutput)
sacct_decoder = msgspec.json.Decoder(SacctOutput)
