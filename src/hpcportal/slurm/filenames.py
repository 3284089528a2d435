"""Slurm's filename patterns (``--output``, ``--error``, ``--input``), expanded as Slurm does.

Slurm expands them on the node when the batch step starts (``fname_create`` in
slurmstepd), so neither ``squeue`` nor ``sacct`` before 23.02 tells where the output
went: the portal works it out the same way. The rules (``man sbatch``, "filename
pattern"):

- ``%%`` is ``%``; ``%j`` and ``%J`` the job id; ``%A`` the array's master job id (the
  job id outside an array); ``%a`` the array task id (4294967294, Slurm's ``NO_VAL``,
  outside an array); ``%b`` the task id modulo 10 (24.11); ``%s`` the first step
  (``batch``); ``%N`` the short host name of the first node; ``%n`` and ``%t`` 0 (the
  batch step runs on the first node as rank 0); ``%u`` the user; ``%x`` the job name.
- A number between ``%`` and the letter zero-pads numbers to that width, at most 10
  (``%5j`` -> ``00042``); text values are not padded. Before a letter that is not a
  pattern, Slurm keeps only the number's last digit (``%12q`` -> ``2q``).
- Any other letter is kept as written, with its ``%``; a ``%`` at the very end is dropped.
- A backslash anywhere turns expansion off: the backslashes are removed and every
  ``%`` stays as written.
- A relative result is relative to the job's working directory.

This follows Slurm's own ``expand_stdio_fields``, which newer releases use for the
``stdout_expanded`` that ``sacct --json`` reports, written to match what
slurmstepd creates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Slurm's ``NO_VAL``: what ``%a`` gives outside an array.
NO_VAL = 4294967294
MAX_WIDTH = 10
_PATTERN = re.compile(r"%(\d*)(.?)", re.DOTALL)
_NUMERIC = frozenset("jJAabnt")


@dataclass(frozen=True, slots=True)
class PatternJob:
    """What a filename pattern can refer to, for one batch job (or array task)."""

    job_id: int
    user: str
    name: str
    array_job_id: int | None = None
    array_task_id: int | None = None
    #: The batch host (the allocation's first node); empty when not yet known.
    host: str = ""
    work_dir: str = "/"


def _values(job: PatternJob) -> dict[str, str]:
    task = job.array_task_id
    return {
        "j": str(job.job_id),
        "A": str(job.array_job_id if job.array_job_id is not None else job.job_id),
        "a": str(task if task is not None else NO_VAL),
        "b": str((task if task is not None else NO_VAL) % 10),
        "J": str(job.job_id),
        "s": "batch",
        "N": job.host.split(".", 1)[0],
        "n": "0",
        "t": "0",
        "u": job.user,
        "x": job.name,
    }


def expand(pattern: str, job: PatternJob) -> str:
    """The file name ``pattern`` gives for ``job`` (not yet joined to the work dir)."""
    if "\\" in pattern:
        return pattern.replace("\\", "")
    values = _values(job)

    def sub(match: re.Match[str]) -> str:
        digits, key = match.group(1), match.group(2)
        if key == "%" and not digits:
            return "%"
        if key not in values:
            return digits[-1:] + key if digits else f"%{key}" if key else ""
        value = values[key]
        if digits and key in _NUMERIC:
            return value.zfill(min(int(digits), MAX_WIDTH))
        return value

    return _PATTERN.sub(sub, pattern)


def default_pattern(job: PatternJob) -> str:
    """sbatch's default: ``slurm-%j.out``, or ``slurm-%A_%a.out`` for an array task."""
    return "slurm-%A_%a.out" if job.array_task_id is not None else "slurm-%j.out"


def output_file(pattern: str | None, job: PatternJob) -> str:
    """The absolute path of the file ``pattern`` (or sbatch's default) names for ``job``."""
    path = expand(pattern or default_pattern(job), job)
    if path.startswith("/"):
        return path
    return f"{job.work_dir.rstrip('/')}/{path}"
