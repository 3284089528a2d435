"""Slurm's mail subject, parsed strictly into a typed ``SlurmMail``.

slurmctld builds it in ``mail_job_info`` (src/slurmctld/agent.c), the same in 22.05,
24.11 and 26.05 (21.08 and older wrote ``SLURM`` in capitals, accepted too)::

    Slurm Job_id=<id> Name=<name> <type><time><term>
    Slurm Array Task Job_id=<array>_<task> (<id>) Name=<name> <type><time><term>
    Slurm Array Summary Job_id=<array>_* (<id>) Name=<name> <type><term>

``<type>`` is ``Began``, ``Ended``, ``Failed``, ``Requeued``, ``Reached time limit``,
``Reached 90% of time limit`` (80, 50), ``Invalid dependency`` or
``StageOut/Teardown``; ``<time>`` is ``, Queued time <t>`` (Began) or ``, Run time
<t>``; ``<term>`` (Ended, Failed) is ``, <STATE>, ExitCode <n>`` or ``, <STATE>``
(an array summary: ``, <STATE>, ExitCode [min-max]`` ...). The job name may hold
anything, spaces and these very words included, so the pattern is anchored at both
ends and the name is what lies between ``Name=`` and the last type that lets the
rest match. Anything else is not a Slurm job mail: ``parse_subject`` returns None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MailType = Literal[
    "began", "ended", "failed", "requeued", "time_limit", "time_90", "time_80", "time_50",
    "invalid_dependency", "stage_out",
]  # fmt: skip

_TYPES: dict[str, MailType] = {
    "Began": "began",
    "Ended": "ended",
    "Failed": "failed",
    "Requeued": "requeued",
    "Reached time limit": "time_limit",
    "Reached 90% of time limit": "time_90",
    "Reached 80% of time limit": "time_80",
    "Reached 50% of time limit": "time_50",
    "Invalid dependency": "invalid_dependency",
    "StageOut/Teardown": "stage_out",
}
_TYPE = "|".join(re.escape(t) for t in sorted(_TYPES, key=len, reverse=True))
#: secs2time_str: ``[D-]HH:MM:SS``, ``MM:SS``, or ``UNLIMITED``/``INVALID``.
_DURATION = r"(?:\d+-)?\d+:\d\d(?::\d\d)?|UNLIMITED|INVALID"
_SUBJECT = re.compile(
    r"(?:Slurm|SLURM) (?:(?P<task>Array Task )|(?P<summary>Array Summary ))?"
    r"Job_id=(?P<job>\d+|\d+_(?:\d+|\*))(?: \((?P<raw>\d+)\))? Name=(?P<name>.*)"
    rf" (?P<type>{_TYPE})"
    rf"(?:, (?P<clock>Queued|Run) time (?P<duration>{_DURATION})| time (?:{_DURATION}))?"
    r"(?:, (?P<state>[A-Z][A-Z_]*|Mixed)"
    r"(?:, (?:ExitCode (?P<exit>\d+)|(?:ExitCode|MaxExitCode|MaxSignal) \[[-\d]+\]))?"
    r"(?P<requeued_tasks>, with requeued tasks)?)?",
    re.DOTALL,
)
#: What a subject may be at most (Slurm's own buffers keep it far shorter).
MAX_SUBJECT = 2048


@dataclass(frozen=True, slots=True)
class SlurmMail:
    """One Slurm mail: which job (``job_id`` as the portal names it: ``123``, or
    ``123_4`` for an array task, ``123_*`` for an array summary), what happened, and
    what the subject says about its end."""

    job_id: str
    raw_job_id: str
    name: str
    mail_type: MailType
    array_summary: bool
    queued_time: str | None = None
    run_time: str | None = None
    state: str | None = None
    exit_code: int | None = None


def parse_subject(subject: str) -> SlurmMail | None:
    """The mail ``subject`` describes, or None when it is no Slurm job mail."""
    if len(subject) > MAX_SUBJECT or "\n" in subject or "\r" in subject:
        return None
    match = _SUBJECT.fullmatch(subject)
    if match is None:
        return None
    job, raw, summary = match["job"], match["raw"], match["summary"] is not None
    array = match["task"] is not None or summary
    # An array's mail says "Array ..." and names the raw id; a plain job's does neither.
    if array != ("_" in job) or array != (raw is not None) or (job.endswith("*") != summary):
        return None
    duration = match["duration"]
    return SlurmMail(
        job_id=job,
        raw_job_id=raw or job,
        name=match["name"],
        mail_type=_TYPES[match["type"]],
        array_summary=summary,
        queued_time=duration if match["clock"] == "Queued" else None,
        run_time=duration if match["clock"] == "Run" else None,
        state=match["state"],
        exit_code=int(match["exit"]) if match["exit"] is not None else None,
    )
