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

Fields with one shape in every family are written once, in the base structs below
(``JobBase``, ``NodeBase``, ``AcctJobBase``) and the generic ``Jobs``/``Nodes``
outputs; each family's structs inherit them and add only what it writes its own way.
The bases add no leniency: every field stays required and typed exactly.

Nothing outside ``hpcportal.slurm`` imports these modules.
"""

from __future__ import annotations

from typing import Generic, TypeVar

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


# --- shared by every family -----------------------------------------------------------

Str = str | None
#: ``WireJob``, ``WireNode`` or ``WireAcctJob`` of one family.
J = TypeVar("J")


class Jobs(msgspec.Struct, Generic[J], frozen=True):
    """``squeue --json`` or ``sacct --json``: the jobs, in one family's struct."""

    jobs: list[J]
    meta: Meta | None = None


class Nodes(msgspec.Struct, Generic[J], frozen=True):
    """``sinfo --json`` (22.05) or ``scontrol --json show nodes``."""

    nodes: list[J]
    meta: Meta | None = None


class JobBase(msgspec.Struct, frozen=True):
    """The fields of a ``squeue`` job with one shape in every family; each family
    adds its states, numbers and exit code."""

    job_id: int
    name: Str
    user_name: Str
    user_id: int
    group_name: Str
    account: Str
    partition: Str
    qos: Str
    state_reason: Str
    array_task_string: Str
    nodes: Str
    tres_req_str: Str
    tres_alloc_str: Str
    dependency: Str
    batch_host: Str
    command: Str
    comment: Str
    current_working_directory: Str
    standard_output: Str
    standard_error: Str
    standard_input: Str


class NodeBase(msgspec.Struct, frozen=True):
    """The fields of a node with one shape in every family."""

    name: str
    hostname: Str
    address: Str
    gres: Str
    gres_used: Str
    reason: Str
    reason_set_by_user: Str
    architecture: Str
    operating_system: Str


class AcctComment(msgspec.Struct, frozen=True):
    job: Str


class AcctJobBase(msgspec.Struct, frozen=True):
    """The fields of a ``sacct`` job with one shape in every family; each family adds
    its nested objects (array, state, exit code, time, required, tres)."""

    job_id: int
    name: Str
    user: Str
    group: Str
    account: Str
    partition: Str
    qos: Str
    nodes: Str
    working_directory: Str
    comment: AcctComment


# --- v0.0.38 (22.05) ------------------------------------------------------------------

#: v0.0.38 writes every number as an integer or, for "not set" (NO_VAL), null.
Int = int | None


class WireJob(JobBase, frozen=True):
    """One job of ``squeue --json``."""

    job_state: str
    priority: Int
    array_job_id: Int
    array_task_id: Int
    array_max_tasks: Int
    node_count: Int
    cpus: Int
    tasks: Int
    memory_per_node: Int
    memory_per_cpu: Int
    time_limit: Int
    submit_time: Int
    eligible_time: Int
    start_time: Int
    end_time: Int
    #: The raw wait status: exit code in bits 8-15, signal in bits 0-6.
    exit_code: Int


class WireNode(NodeBase, frozen=True):
    """One node of ``sinfo --json`` (22.05 lists nodes there)."""

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
    features: Str
    reason_changed_at: Int
    boot_time: Int
    last_busy: Int
    slurmd_version: Str


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


class WireAcctJob(AcctJobBase, frozen=True):
    """One job of ``sacct --json``."""

    allocation_nodes: Int
    array: AcctArray
    state: AcctState
    exit_code: ExitCode
    time: AcctTime
    required: AcctRequired
    tres: AcctTres


envelope_decoder = msgspec.json.Decoder(Envelope)
squeue_decoder = msgspec.json.Decoder(Jobs[WireJob])
nodes_decoder = msgspec.json.Decoder(Nodes[WireNode])
sacct_decoder = msgspec.json.Decoder(Jobs[WireAcctJob])
