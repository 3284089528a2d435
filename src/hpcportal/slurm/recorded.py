"""What the accounting database recorded of a job's submission: script, environment,
submit line. Parsers of ``sacct --batch-script``, ``sacct --env-vars`` and a
``sacct --parsable2`` row, all as Slurm prints them.

Slurm keeps the script and the environment only with ``AccountingStoreFlags`` naming
``job_script`` and ``job_env``; without them (and for jobs that had no batch script,
like ``srun``'s) it prints ``NONE``. Both come as blocks::

    Batch Script for 42
    --------------------------------------------------------------------------------
    #!/bin/bash
    ...

22.05 prints one newline of its own after the text, 24.11 and 26.05 do not. A job
sacct does not know, or one it will not show the asking user, prints nothing.
"""

from __future__ import annotations

from hpcportal.slurm.models import RecordedSubmission

_RULE = "-" * 20
#: ``sacct -X --parsable2 --format=`` of ``recorded_submission``; SubmitLine last, as
#: it may hold ``|`` itself.
SUBMISSION_FIELDS = ("JobIDRaw", "WorkDir", "SubmitLine")


def _body(raw: bytes) -> str | None:
    """The text after the header and its rule of dashes, without 22.05's extra newline
    (a script ending in a blank line loses that line: harmless for a script)."""
    text = raw.decode("utf-8", "replace")
    head, found, rest = text.partition("\n")
    if not found or not head.strip():
        return None
    rule, found, body = rest.partition("\n")
    if not rule.startswith(_RULE):
        return None
    if body.endswith("\n\n"):
        body = body[:-1]
    return None if body.strip() in ("", "NONE") else body


def parse_batch_script(raw: bytes) -> str | None:
    """The script of one job, or None when Slurm recorded none (or shows none)."""
    return _body(raw)


def parse_environment(raw: bytes) -> dict[str, str] | None:
    """``NAME=value`` lines of one job, in Slurm's order; a line without ``=`` continues
    the value above it (a value with newlines, like an exported shell function)."""
    body = _body(raw)
    if body is None:
        return None
    env: dict[str, str] = {}
    last: str | None = None
    for line in body.removesuffix("\n").split("\n"):
        name, equals, value = line.partition("=")
        if equals and name and " " not in name:
            env[name] = value
            last = name
        elif last is not None:
            env[last] += "\n" + line
    return env


def parse_submission(raw: bytes) -> RecordedSubmission | None:
    """The first row of ``sacct -X --parsable2 --format=JobIDRaw,WorkDir,SubmitLine``."""
    lines = [ln for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    header = lines[0].split("|")
    if tuple(header[: len(SUBMISSION_FIELDS)]) != SUBMISSION_FIELDS:
        raise ValueError(f"unexpected sacct header {lines[0]!r}")
    job_id, work_dir, submit_line = lines[1].split("|", 2)
    return RecordedSubmission(
        job_id=int(job_id),
        work_dir=work_dir or None,
        submit_line=submit_line or None,
    )
