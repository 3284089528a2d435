"""Slurm 22.05's JSON (OpenAPI v0.0.38) as it arrives, decoded strictly by msgspec.

One module per family of formats: this one (v0.0.38, Slurm 22.05), ``wire_v0039``
(23.02) and ``wire_v0040`` (v0.0.40 to v0.0.45, Slurm 23.11 to 26.05);
``formats`` says which format a document is in and picks the module.

The structs name only the fields the portal reads, and every one of them is
*required* with its exact type: a field that Slurm renamed is missing and fails, and
a field whose shape changed (a number become an object, an object a string) fails
too, instead of reading as 0 or None. Fields the portal does not read are skipped, so
an extra field from a newer Slurm costs nothing. Strings may be ``null``: 22.05
writes that for "nothing". Decoding 10,000 jobs takes ~50 ms.

Nothing outside ``hpcportal.slurm`` imports these modules.
"""

from __future__ import annotations

import msgspec


class NoVal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A number that may be unset or infinite (``{"set", "infinite", "number"}``,
    data_parser v0.0.39 on). Every key is required and no other is allowed, so no
    other object (an exit code, a signal) can pass for a number."""

    set: bool
    infinite: bool
    number: int


# --- the meta block: three spellings across releases ------------------------------


class MetaPlugin(msgspec.Struct, frozen=True):
    """``type`` is ``openapi/v0.0.38`` (22.05) or ``openapi/dbv0.0.38`` (sacct);
    ``data_parser`` is ``v0.0.39`` (23.02) or ``data_parser/v0.0.42`` (23.11 on)."""

    type: str | None = None
    name: str | None = None
    data_parser: str | None = None


class MetaVersion(msgspec.Struct, frozen=True):
    """Numbers in 22.05, strings from 23.11 (and either in 23.02's descriptions)."""

    major: int | str
    minor: int | str
    micro: int | str


class MetaSlurm(msgspec.Struct, frozen=True):
    version: MetaVersion
    release: str | None = None


class Meta(msgspec.Struct, frozen=True, rename={"slurm_old": "Slurm"}):
    """``meta``: ``Slurm`` (capital S) up to 23.02, ``slurm`` from 23.11."""

    plugin: MetaPlugin | None = None
    slurm_old: MetaSlurm | None = None
    slurm: MetaSlurm | None = None


class Envelope(msgspec.Struct, frozen=True):
    """Only the meta block of any output: read first to know the format."""

    meta: Meta | None = None


# --- v0.0.38 (22.05) ------------------------------------------------------------------

Str = str | None
#: v0.0.38 writes every number as an integer or, for "not set" (NO_VAL), null.
Int = int | None


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
    job_state: str
    state_reason: Str
    priority: Int
    array_job_id: Int
    array_task_id: Int
    array_task_string: Str
    array_max_tasks: Int
    nodes: Str
    node_count: Int
    cpus: Int
    tasks: Int
    memory_per_node: Int
    memory_per_cpu: Int
    tres_req_str: Str
    tres_alloc_str: Str
    time_limit: Int
    submit_time: Int
    eligible_time: Int
    start_time: Int
    end_time: Int
    dependency: Str
    #: The raw wait status: exit code in bits 8-15, signal in bits 0-6.
    exit_code: Int
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
    """One node of ``sinfo --json`` (22.05 lists nodes there)."""

    name: str
    hostname: Str
    address: Str
    state: str
    state_flags: list[str]
    partitions: list[str] | None
    cpus: Int
    alloc_cpus: Int
    idle_cpus: Int
    cpu_load: Int
    real_memory: Int
    alloc_memory: Int
    free_memory: Int
    gres: Str
    gres_used: Str
    features: Str
    reason: Str
    reason_set_by_user: Str
    reason_changed_at: Int
    boot_time: Int
    last_busy: Int
    slurmd_version: Str
    architecture: Str
    operating_system: Str


class NodesOutput(msgspec.Struct, frozen=True):
    nodes: list[WireNode]
    meta: Meta | None = None


class ExitCode(msgspec.Struct, frozen=True):
    status: str
    return_code: Int


class AcctArray(msgspec.Struct, frozen=True):
    job_id: int
    task_id: Int
    task: Str


class AcctState(msgspec.Struct, frozen=True):
    current: str
    reason: Str


class CpuTime(msgspec.Struct, frozen=True):
    seconds: Int
    microseconds: Int


class AcctTime(msgspec.Struct, frozen=True):
    elapsed: Int
    eligible: Int
    end: Int
    start: Int
    submission: Int
    limit: Int
    total: CpuTime


class AcctRequired(msgspec.Struct, frozen=True, rename={"cpus": "CPUs"}):
    cpus: Int
    memory: Int


class Tres(msgspec.Struct, frozen=True):
    type: str
    name: Str
    count: Int


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
    allocation_nodes: Int
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


envelope_decoder = msgspec.json.Decoder(Envelope)
squeue_decoder = msgspec.json.Decoder(SqueueOutput)
nodes_decoder = msgspec.json.Decoder(NodesOutput)
sacct_decoder = msgspec.json.Decoder(SacctOutput)
