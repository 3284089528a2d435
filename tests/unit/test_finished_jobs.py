"""Finished jobs as jobs: accounting records mapped to ``Job``, and their files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hpcportal.services.finished_jobs import (
    command_line_files,
    ended_within,
    files_of,
    files_of_queued,
    job_from_record,
    recorded_patterns,
)
from hpcportal.slurm import parse
from hpcportal.slurm.models import AccountingRecord, Job, JobArray, JobPrivate, RecordedSubmission
from hpcportal.slurm.states import JobStatus
from tests.unit.slurm_fixtures import FIXTURES

SCRIPT = "#!/bin/bash\n#SBATCH --job-name=py\n#SBATCH --output=python-%j.out\necho hi\n"


def records(release: str) -> dict[str, AccountingRecord]:
    raw = (FIXTURES / release / "sacct.json").read_bytes()
    data_format = {"22.05": None, "24.11": "v0.0.42", "26.05": "v0.0.45"}[release]
    return {r.name: r for r in parse.parse_sacct(raw, data_format)}


@pytest.mark.parametrize("release", ["22.05", "24.11", "26.05"])
def test_a_recorded_job_maps_onto_a_job(release: str) -> None:
    record = records(release)["rec-failed"]
    job = job_from_record(record)
    assert isinstance(job, Job)
    assert (job.id, job.job_id, job.name, job.user) == (
        record.id, record.job_id, "rec-failed", "alice",
    )  # fmt: skip
    assert job.status is JobStatus.FAILED and job.state == record.state
    assert job.exit_code == record.exit_code and job.signal == record.signal
    assert (job.submit_time, job.start_time, job.end_time) == (
        record.submit_time, record.start_time, record.end_time,
    )  # fmt: skip
    assert job.end_time is not None and job.start_time is not None
    assert job.node_names == record.node_names and job.batch_host == record.node_names[0]
    assert job.cpus == record.cpus_requested and job.time_limit_minutes == record.time_limit_minutes
    assert job.priority is None and job.dependency is None  # not recorded: not shown stale
    assert job.private is not None and job.private.work_dir == record.work_dir


def test_a_record_without_its_private_part_gives_a_public_job() -> None:
    record = records("22.05")["rec-completed"].model_copy(update={"work_dir": None})
    job = job_from_record(record)
    assert job.private is None
    assert files_of(job, "python-%j.out", None) is None


def test_gpus_come_from_the_allocated_tres() -> None:
    record = records("22.05")["rec-completed"].model_copy(
        update={"tres_allocated": {"cpu": 2, "gres/gpu": 1, "gres/gpu:a100": 1}}
    )
    assert job_from_record(record).gpus == 2


def test_the_command_line_wins_over_the_script() -> None:
    line = "sbatch --parsable -J x -o cmd-%j.out --error=err-%j.txt job.sh"
    assert command_line_files(line) == {"output": "cmd-%j.out", "error": "err-%j.txt"}
    assert command_line_files("sbatch -ofoo.txt job.sh") == {"output": "foo.txt"}
    assert command_line_files("sbatch --wrap 'echo \"unclosed") == {}
    submission = RecordedSubmission(job_id=56, work_dir="/home/alice", submit_line=line)
    assert recorded_patterns(SCRIPT, submission) == ("cmd-%j.out", "err-%j.txt")
    plain = RecordedSubmission(job_id=56, submit_line="sbatch job.sh")
    assert recorded_patterns(SCRIPT, plain) == ("python-%j.out", None)
    assert recorded_patterns(None, None) == (None, None)


def test_a_forgotten_jobs_output_is_where_its_script_said() -> None:
    job = job_from_record(records("22.05")["rec-completed"]).model_copy(
        update={"job_id": 56, "private": JobPrivate(work_dir="/home/alice")}
    )
    files = files_of(job, *recorded_patterns(SCRIPT, None))
    assert files is not None
    assert files.stdout == files.stderr == "/home/alice/python-56.out"
    assert files.stdout_pattern == "python-%j.out"
    default = files_of(job, None, None)
    assert default is not None and default.stdout == "/home/alice/slurm-56.out"


def test_a_queued_jobs_patterns_are_expanded() -> None:
    job = Job(
        id="60_2", job_id=62, array=JobArray(job_id=60, task_id=2), name="sweep", user="alice",
        partition="normal", state="RUNNING", status=JobStatus.RUNNING, node_names=["node003"],
        private=JobPrivate(work_dir="/w", stdout="%x-%A_%a.out", stderr="/tmp/%u-%3a.err"),
    )  # fmt: skip
    files = files_of_queued(job)
    assert files is not None
    assert files.stdout == "/w/sweep-60_2.out" and files.stderr == "/tmp/alice-002.err"


def test_recent_means_ended_within_the_window() -> None:
    record = records("22.05")["rec-completed"]
    assert record.end_time is not None
    assert ended_within(record, record.end_time - timedelta(days=1))
    assert not ended_within(record, record.end_time + timedelta(seconds=1))
    running = record.model_copy(update={"status": JobStatus.RUNNING, "end_time": None})
    assert not ended_within(running, datetime(1970, 1, 1, tzinfo=UTC))
