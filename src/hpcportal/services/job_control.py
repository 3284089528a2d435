"""Cancel, hold, release, requeue and signal jobs, as the user who asks.

Each action runs as that user through the run-as boundary, so Slurm decides: bob
cancelling alice's job is refused by Slurm (403 with Slurm's reason), carol as a
Slurm administrator may. The portal adds no rule of its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import InvalidInput, SlurmError, SlurmNotFound
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import validate_job_id
from hpcportal.slurm.actions import ControlOutcome, SlurmActions

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


def normal_signal(signal: str | None) -> str:
    """``usr1``, ``SIGUSR1`` -> ``USR1``; one of ``SIGNALS`` or ``InvalidInput``."""
    name = (signal or "").upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise InvalidInput(f"Unknown signal; use one of {', '.join(sorted(SIGNALS))}.")
    return name


def control(
    slurm: SlurmActions, who: Principal, job_id: str, action: Action, signal: str | None = None
) -> ControlResult:
    """Run one action on ``job_id`` (``123`` or an array task ``123_4``) as ``who``."""
    validate_job_id(job_id)
    outcome = _act(slurm, who.username, job_id, action, signal)
    return ControlResult(
        job_id=job_id, action=action, signal=outcome.signal, message=message(outcome)
    )


def _act(
    slurm: SlurmActions, user: str, job_id: str, action: Action, signal: str | None
) -> ControlOutcome:
    if action == "signal":
        return slurm.signal(job_id, normal_signal(signal), as_user=user)
    if action == "cancel":
        return slurm.cancel(job_id, as_user=user)
    if action == "hold":
        return slurm.hold(job_id, as_user=user)
    if action == "release":
        return slurm.release(job_id, as_user=user)
    return slurm.requeue(job_id, as_user=user)


def already_ended(exc: SlurmError) -> bool:
    """Was a cancel refused only because the job is gone or finishing? (What plain
    ``scancel`` keeps quiet about, and callers ending a session take as done.)"""
    text = exc.message.lower()
    return isinstance(exc, SlurmNotFound) or "already completing" in text


def message(outcome: ControlOutcome) -> str:
    """What the person is told Slurm did."""
    if outcome.action == "signal":
        return f"Sent SIG{outcome.signal} to job {outcome.job_id}."
    return f"Job {outcome.job_id} {PAST_TENSE[outcome.action]}."
