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
Where a struct is 23.02's but for a few fields, it subclasses ``wire_v0039``'s and
redefines only those.
"""

from __future__ import annotations

import msgspec

from hpcportal.slurm import wire_v0039
from hpcportal.slurm.wire import Jobs, Nodes, NoVal, Str


class Signal(msgspec.Struct, frozen=True):
    id: NoVal
    name: Str


class ExitCode(msgspec.Struct, frozen=True):
    """``status`` (``["SUCCESS"]``, ``["ERROR"]``, ``["SIGNALED"]``), the process's
    own return code, and the signal that ended it."""

    status: list[str]
    return_code: NoVal
    signal: Signal


class WireJob(wire_v0039.WireJob, frozen=True):
    """One job of ``squeue --json``: 23.02's, with a list of state flags, NoVal
    times and an exit code object."""

    job_state: list[str]  # type: ignore[assignment]
    submit_time: NoVal  # type: ignore[assignment]
    eligible_time: NoVal  # type: ignore[assignment]
    start_time: NoVal  # type: ignore[assignment]
    end_time: NoVal  # type: ignore[assignment]
    exit_code: ExitCode  # type: ignore[assignment]


class WireNode(wire_v0039.WireNode, frozen=True):
    """One node of ``scontrol --json show nodes``: 23.02's, with a plain CPU load and
    NoVal times."""

    cpu_load: int  # type: ignore[assignment]
    reason_changed_at: NoVal  # type: ignore[assignment]
    boot_time: NoVal  # type: ignore[assignment]
    last_busy: NoVal  # type: ignore[assignment]


class AcctArray(msgspec.Struct, frozen=True):
    job_id: int
    task_id: NoVal
    task: Str


class AcctState(msgspec.Struct, frozen=True):
    current: list[str]
    reason: Str


class AcctTime(wire_v0039.AcctTime, frozen=True):
    limit: NoVal


class AcctRequired(msgspec.Struct, frozen=True, rename={"cpus": "CPUs"}):
    cpus: int
    memory_per_cpu: NoVal
    memory_per_node: NoVal


class WireAcctJob(wire_v0039.WireAcctJob, frozen=True):
    """One job of ``sacct --json``: 23.02's, with this family's nested objects."""

    array: AcctArray  # type: ignore[assignment]
    state: AcctState  # type: ignore[assignment]
    exit_code: ExitCode  # type: ignore[assignment]
    time: AcctTime
    required: AcctRequired  # type: ignore[assignment]


squeue_decoder = msgspec.json.Decoder(Jobs[WireJob])
nodes_decoder = msgspec.json.Decoder(Nodes[WireNode])
sacct_decoder = msgspec.json.Decoder(Jobs[WireAcctJob])
