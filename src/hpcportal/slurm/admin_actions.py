"""Administrators' actions inside the Slurm boundary: typed requests, one argv each.

An admin change is a frozen request (``DrainNodes``, ``ResumeNodes``, ...) turned into
``AdminCommand`` values by one function per family (``node_commands``); the plan
shown to the administrator *is* those values, and ``SlurmAdmin.run`` runs exactly
their ``argv`` as the administrator's own Unix user through the run-as boundary.
Nothing else builds an admin command line, so what is shown is what runs.

Slurm decides: the portal's service account gains no Slurm privilege; a user without
``AdminLevel`` (or operator/coordinator rights for what they ask) is refused by
slurmctld, and the refusal stays the typed error of ``hpcportal.errors`` (403 with
Slurm's reason).

Node states in Slurm (``scontrol update NodeName=X State=...``):

- ``DRAIN`` lets running jobs finish and starts no new ones: the node shows
  ``DRAINING`` (``drng``) while jobs run and ``DRAINED`` once idle. That *is* "drain
  when idle"; there is no separate state for it.
- ``DOWN`` takes the node out at once; slurmctld requeues or kills its jobs.
- ``RESUME`` clears DRAIN/DOWN/FAIL (and a pending reboot).
- ``scontrol reboot [ASAP] [nextstate=RESUME|DOWN] reason=... NODES`` reboots when
  idle (``ASAP`` also drains it meanwhile); it needs ``RebootProgram`` in slurm.conf,
  else scontrol refuses with "RebootProgram isn't defined".
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from hpcportal.errors import InvalidInput
from hpcportal.slurm import sacctmgr_output
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import SlurmExecutor, classify_failure

AdminProgram = Literal["scontrol", "sacctmgr"]
NextState = Literal["resume", "down"]

#: A node name or hostlist expression (``node003``, ``node[001-002]``, ``a,b``).
_NODES = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-\[\],]{0,499}$")
REASON_MAX = 200


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """One Slurm command of an admin change: the program and its arguments."""

    program: AdminProgram
    args: tuple[str, ...]

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.program, *self.args)

    def shown(self) -> str:
        """The command as a shell would take it (for people; it never runs so)."""
        return shlex.join(self.argv)


@dataclass(frozen=True, slots=True)
class AdminOutcome:
    """What ran (the argv the executor was given) and what Slurm printed."""

    argv: tuple[str, ...]
    stdout: str
    stderr: str


# --- node requests ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrainNodes:
    """Start no new jobs on ``nodes``; running ones finish (drain when idle)."""

    nodes: str
    reason: str


@dataclass(frozen=True, slots=True)
class DownNodes:
    """Take ``nodes`` out now; Slurm requeues or kills what runs there."""

    nodes: str
    reason: str


@dataclass(frozen=True, slots=True)
class ResumeNodes:
    """Clear DRAIN/DOWN on ``nodes``."""

    nodes: str


@dataclass(frozen=True, slots=True)
class RebootNodes:
    """Reboot ``nodes`` once idle (``ASAP`` drains them meanwhile), then ``next_state``."""

    nodes: str
    reason: str
    next_state: NextState = "resume"
    asap: bool = True


NodeRequest = DrainNodes | DownNodes | ResumeNodes | RebootNodes


def check_nodes(nodes: str) -> str:
    """A node name or hostlist, or ``InvalidInput`` (never an option, never a space)."""
    if not _NODES.fullmatch(nodes):
        raise InvalidInput("Name nodes as Slurm does: node003, node[001-002].")
    return nodes


def check_reason(reason: str) -> str:
    """A one-line reason Slurm stores as given (it keeps it in its state files)."""
    text = reason.strip()
    if not text:
        raise InvalidInput("Give a reason.")
    if len(text) > REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"A reason is one line of at most {REASON_MAX} characters.")
    return text


def node_commands(request: NodeRequest) -> tuple[AdminCommand, ...]:
    """The commands of one node request: the only place their argv is built."""
    nodes = check_nodes(request.nodes)
    update = ("update", f"NodeName={nodes}")
    args: tuple[str, ...]
    if isinstance(request, DrainNodes):
        args = (*update, "State=DRAIN", f"Reason={check_reason(request.reason)}")
    elif isinstance(request, DownNodes):
        args = (*update, "State=DOWN", f"Reason={check_reason(request.reason)}")
    elif isinstance(request, ResumeNodes):
        args = (*update, "State=RESUME")
    else:
        when = ("ASAP",) if request.asap else ()
        reason = check_reason(request.reason)
        next_state = f"nextstate={request.next_state.upper()}"
        args = ("reboot", *when, next_state, f"reason={reason}", nodes)
    return (AdminCommand("scontrol", args),)


class SlurmAdmin:
    """Runs admin commands as the administrator. Thread-safe; blocking."""

    def __init__(self, executor: SlurmExecutor, cluster: SlurmCluster | None = None) -> None:
        self._executor = executor
        self.cluster = cluster or executor.cluster

    def run(self, command: AdminCommand, *, as_user: str) -> AdminOutcome:
        """Run ``command.argv`` as ``as_user``; Slurm's refusal is raised typed.

        ``scontrol update`` prints nothing when it did it and may exit 0 after an
        error line, so any ``error`` on stderr is a refusal. ``sacctmgr -i`` reports on
        stdout; a refusal exits 1 (raised typed by the executor), and the report of
        a change it knows (QoS) must name what it changed (``sacctmgr_output``).
        """
        done = self._executor.run(command.program, list(command.args), as_user=as_user)
        if command.program == "scontrol" and "error" in done.stderr.lower():
            raise classify_failure(command.program, done.stderr)
        stdout = done.stdout.decode("utf-8", "replace")
        if command.program == "sacctmgr":
            sacctmgr_output.check_done(command.args, stdout)
        return AdminOutcome(done.argv, stdout, done.stderr)
