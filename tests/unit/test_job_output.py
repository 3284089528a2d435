"""Reading a job's output: a waiting job's path is never read.

A file at a pending job's output path belongs to an earlier job of the same name
(``--output=run.out``, or the same job id on another cluster): Slurm truncates it when
this job starts. Reading it before then showed the earlier job's lines, and moved the
reader's offset past what the new job would write.
"""

from __future__ import annotations

from typing import Any

import pytest

from hpcportal.runas import RunAs
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.finished_jobs import JobFiles
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import read_chunk
from hpcportal.services.jobs import JobDetail
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

ALICE = Principal(username="alice", uid=1001, gid=1001, groups=("research",), role="user")
FILES = JobFiles(work_dir="/home/alice", stdout="/home/alice/run.out", stderr="/home/alice/run.out")
META = SnapshotMeta(taken_at=None, age_seconds=None, stale=False)


def detail(status: JobStatus, state: str) -> JobDetail:
    job = Job(
        id="7", job_id=7, name="run", user="alice", partition="normal", state=state,
        status=status,
    )  # fmt: skip
    return JobDetail(job=job, files=FILES, source="snapshot", snapshot=META)


class Refusing(RunAs):
    """Stands in for the run-as boundary: any use of it fails the test."""

    def __init__(self) -> None:
        pass

    def __getattribute__(self, name: str) -> Any:
        raise AssertionError(f"the output was read ({name})")


@pytest.mark.parametrize(
    ("status", "state"), [(JobStatus.QUEUED, "PENDING"), (JobStatus.QUEUED_HELD, "PENDING")]
)
def test_a_waiting_job_has_no_output_whatever_is_at_its_path(status: JobStatus, state: str) -> None:
    chunk = read_chunk(Refusing(), ALICE, detail(status, state), "stdout", 5000, 1024)
    assert (chunk.data, chunk.size, chunk.offset, chunk.next_offset) == ("", 0, 0, 0)
    assert chunk.eof and not chunk.finished


def test_a_running_job_is_read() -> None:
    """The control: the same call for a running job does reach the boundary."""
    with pytest.raises(AssertionError, match="the output was read"):
        read_chunk(Refusing(), ALICE, detail(JobStatus.RUNNING, "RUNNING"), "stdout", 0, 1024)
