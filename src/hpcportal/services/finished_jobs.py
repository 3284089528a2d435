"""Finished jobs as first-class jobs: where their output went, and jobs from accounting.

slurmctld forgets a job ``MinJobAge`` after it ends; from then on only the accounting
database knows it. This module makes such a job look like any other: an accounting
record becomes a ``Job`` (``job_from_record``), its output files are worked out from
what Slurm recorded (the submit line's ``-o``/``-e`` win over the script's
``#SBATCH`` lines, as in sbatch; then sbatch's default), expanded the way Slurm
expands them (``slurm.filenames``), and the jobs list can show jobs that ended in
the last days beside the queue (``recent_jobs``).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from hpcportal.services.identity import Principal
from hpcportal.services.sbatch_script import parse_directives
from hpcportal.services.visibility import for_accounting
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.filenames import PatternJob, output_file
from hpcportal.slurm.models import AccountingRecord, Job, JobPrivate, RecordedSubmission
from hpcportal.slurm.states import JobStatus

FINISHED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT}
)
#: The choices of the jobs list's "Recent" filter, in days (0: the queue only).
RECENT_DAYS = (0, 1, 7, 30)
_FILE_OPTIONS = {"-o": "output", "--output": "output", "-e": "error", "--error": "error"}


class JobFiles(BaseModel):
    """Where a job reads and writes: the patterns as given, and the files they name."""

    work_dir: str
    stdout_pattern: str | None = None
    stderr_pattern: str | None = None
    stdout: str
    #: The same file as ``stdout`` unless the job set ``--error``.
    stderr: str


def _pattern_job(job: Job, work_dir: str) -> PatternJob:
    array = job.array
    return PatternJob(
        job_id=job.job_id,
        user=job.user,
        name=job.name,
        array_job_id=array.job_id if array else None,
        array_task_id=array.task_id if array else None,
        host=job.batch_host or next(iter(job.node_names), ""),
        work_dir=work_dir,
    )


def files_of(job: Job, stdout: str | None, stderr: str | None) -> JobFiles | None:
    """The files of ``job`` (its private part must be visible) for these patterns."""
    if job.private is None:
        return None
    work_dir = job.private.work_dir or "/"
    fields = _pattern_job(job, work_dir)
    out = output_file(stdout, fields)
    return JobFiles(
        work_dir=work_dir,
        stdout_pattern=stdout or None,
        stderr_pattern=stderr or None,
        stdout=out,
        stderr=output_file(stderr, fields) if stderr else out,
    )


def files_of_queued(job: Job) -> JobFiles | None:
    """A job slurmctld still holds: its ``--output``/``--error`` as slurmctld reports."""
    if job.private is None:
        return None
    return files_of(job, job.private.stdout, job.private.stderr)


def command_line_files(submit_line: str | None) -> dict[str, str]:
    """``output``/``error`` given on sbatch's command line (``-o x``, ``--error=y``)."""
    try:
        words = shlex.split(submit_line or "")
    except ValueError:
        return {}
    found: dict[str, str] = {}
    index = 1
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, equals, value = word.partition("=")
        else:
            name, equals, value = word[:2], "", word[2:]
        key = _FILE_OPTIONS.get(name)
        if key is None:
            continue
        if not equals and not value and index < len(words):
            value, index = words[index], index + 1
        found[key] = value
    return found


def recorded_patterns(
    script: str | None, submission: RecordedSubmission | None
) -> tuple[str | None, str | None]:
    """(stdout, stderr) patterns: the command line's, else the script's ``#SBATCH``."""
    chosen: dict[str, str] = {}
    for directive in parse_directives(script or ""):
        key = _FILE_OPTIONS.get(directive.option)
        if key is not None:
            chosen[key] = directive.value
    chosen.update(command_line_files(submission.submit_line if submission else None))
    return chosen.get("output"), chosen.get("error")


def job_from_record(record: AccountingRecord) -> Job:
    """An accounting record as a ``Job``, so pages and lists treat both alike.

    The private part is there when the record's is (``work_dir`` is kept for the owner
    and admins only); output paths are added by ``files_of``. Priority and dependency
    are not recorded for a finished job and stay empty.
    """
    private = None
    if record.work_dir is not None:
        private = JobPrivate(work_dir=record.work_dir, comment=record.comment)
    gpus = sum(n for name, n in record.tres_allocated.items() if name.startswith("gres/gpu"))
    return Job(
        id=record.id,
        job_id=record.job_id,
        array=record.array,
        name=record.name,
        user=record.user,
        group=record.group,
        account=record.account,
        partition=record.partition or "",
        qos=record.qos,
        state=record.state,
        status=record.status,
        reason=record.reason,
        nodes=record.nodes,
        node_names=record.node_names,
        node_count=record.node_count,
        cpus=record.cpus_requested,
        memory_mb=record.memory_requested_mb,
        gpus=gpus,
        tres_allocated={name: str(n) for name, n in record.tres_allocated.items()},
        time_limit_minutes=record.time_limit_minutes,
        submit_time=record.submit_time,
        eligible_time=record.eligible_time,
        start_time=record.start_time,
        end_time=record.end_time,
        exit_code=record.exit_code,
        signal=record.signal,
        batch_host=next(iter(record.node_names), None),
        private=private,
    )


def recorded_files(
    adapter: SlurmAdapter, job: Job, who: Principal
) -> tuple[JobFiles | None, str | None]:
    """A forgotten job's files and script, from what accounting recorded, asked as
    ``who`` (slurmdbd decides whose scripts they see). Two cached ``sacct`` calls."""
    if job.private is None:
        return None, None
    key = job.id
    script = adapter.recorded_script(key, as_user=who.username)
    submission = adapter.recorded_submission(key, as_user=who.username)
    stdout, stderr = recorded_patterns(script, submission)
    if submission is not None and submission.work_dir and not job.private.work_dir:
        job = job.model_copy(
            update={"private": job.private.model_copy(update={"work_dir": submission.work_dir})}
        )
    return files_of(job, stdout, stderr), script


def ended_within(record: AccountingRecord, since: datetime) -> bool:
    return (
        record.status in FINISHED
        and record.end_time is not None
        and record.end_time.astimezone(UTC) >= since
    )


def recent_jobs(adapter: SlurmAdapter, who: Principal, users: list[str], days: int) -> list[Job]:
    """Jobs that ended in the last ``days`` days (``sacct``, cached briefly), as ``Job``s,
    limited to what ``sacct`` run as ``who`` shows and to ``users`` when given. The
    private part stays with the owner and admins."""
    if days <= 0:
        return []
    now = datetime.now(UTC)
    since = now - timedelta(days=days)
    start = since.replace(tzinfo=None, minute=0, second=0, microsecond=0)
    end = (now + timedelta(hours=1)).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    records = adapter.accounting(start, end, users=users)
    vis = for_accounting(who, adapter)
    wanted = set(users)
    jobs: list[Job] = []
    for record in records:
        if not vis.sees_job(record) or (wanted and record.user not in wanted):
            continue
        if not ended_within(record, since):
            continue
        if not who.owns_or_admin(record.user):
            record = record.model_copy(update={"work_dir": None, "comment": None})
        jobs.append(job_from_record(record))
    return jobs
