"""Cancel, hold, release, requeue and signal jobs, as the user who asks.

Each action runs as that user through the run-as boundary, so Slurm decides: bob
cancelling alice's job is refused by Slurm (403 with Slurm's reason), carol as a
Slurm administrator may. The portal adds no rule of its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import InvalidInput
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import validate_job_id
from hpcportal.slurm.executor import SlurmExecutor, classify_failure

Action = Literal["cancel", "hold", "release", "requeue", "signal"]
SIGNALS = frozenset(
    {"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "STOP", "CONT", "ALRM", "CHLD"}
)


PAST_TENSE = {"cancel": "cancelled", "hold": "held", "release": "released", "requeue": "requeued"}


class ControlResult(BaseModel):
    job_id: str
    action: Action
    signal: str | None = None
    ok: bool = True
    message: str


def _command(action: Action, job_id: str, signal: str | None) -> tuple[str, list[str]]:
    # --verbose: without it scancel says nothing, and exits 0, for an unknown job id.
    if action == "cancel":
        return "scancel", ["--verbose", job_id]
    if action == "signal":
        return "scancel", ["--verbose", f"--signal={signal}", "--full", job_id]
    return "scontrol", [action, job_id]


def control(
    executor: SlurmExecutor, who: Principal, job_id: str, action: Action, signal: str | None = None
) -> ControlResult:
    """Run one action on ``job_id`` (``123`` or an array task ``123_4``) as ``who``."""
    validate_job_id(job_id)
    if action == "signal":
        signal = (signal or "").upper().removeprefix("SIG")
        if signal not in SIGNALS:
            raise InvalidInput(f"Unknown signal; use one of {', '.join(sorted(SIGNALS))}.")
    command, args = _command(action, job_id, signal)
    done = executor.run(command, args, as_user=who.username)
    if "error:" in done.stderr.lower():
        # scancel reports some refusals (an unknown job id) with exit code 0.
        raise classify_failure(command, done.stderr)
    if action == "signal":
        message = f"Sent SIG{signal} to job {job_id}."
    else:
        message = f"Job {job_id} {PAST_TENSE[action]}."
    return ControlResult(job_id=job_id, action=action, signal=signal, message=message)
