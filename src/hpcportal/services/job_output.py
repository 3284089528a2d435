"""A job's output files, read as the user in bounded chunks.

The paths come from Slurm (the job's ``--output``/``--error`` patterns, expanded by
``slurm.filenames`` the way Slurm expands them); the bytes are read through the run-as
boundary, so the file system decides who may read them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import Forbidden, NotFound
from hpcportal.runas import AsUser, RunAs
from hpcportal.services.finished_jobs import files_of_queued
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import JobDetail
from hpcportal.slurm.states import JobStatus

Stream = Literal["stdout", "stderr"]
FINISHED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT}
)


class OutputChunk(BaseModel):
    job_id: str
    stream: Stream
    path: str
    offset: int
    next_offset: int
    size: int
    data: str
    eof: bool
    finished: bool


NOT_YOURS = "Only the job's owner (and admins) can read its output."


def check_may_read(detail: JobDetail, who: Principal) -> None:
    """Output belongs to the job's owner; admins may try (the file system decides)."""
    owner = detail.job.user if detail.job else detail.accounting.user if detail.accounting else None
    if not who.owns_or_admin(owner or ""):
        raise Forbidden(NOT_YOURS)


def output_path(detail: JobDetail, stream: Stream) -> str:
    """Where Slurm writes the job's stdout or stderr (``JobDetail.files``, worked out by
    ``services.finished_jobs`` from what slurmctld or accounting recorded)."""
    if detail.files is not None:
        return detail.files.stderr if stream == "stderr" else detail.files.stdout
    if detail.job is not None:
        files = files_of_queued(detail.job)
        if files is None:
            raise Forbidden(NOT_YOURS)
        return files.stderr if stream == "stderr" else files.stdout
    if detail.accounting is not None:
        raise NotFound(
            "Where this job wrote its output is not known: accounting did not record "
            "how it was submitted."
        )
    raise NotFound("No such job.")


WAITING = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD})


def job_finished(detail: JobDetail) -> bool:
    if detail.job is not None:
        return detail.job.status in FINISHED
    return detail.accounting is not None and detail.accounting.status in FINISHED


def job_waiting(detail: JobDetail) -> bool:
    """The job has not started: nothing at its output path is its own yet."""
    return detail.job is not None and detail.job.status in WAITING


def read_chunk(
    runas: RunAs,
    who: Principal,
    detail: JobDetail,
    stream: Stream,
    offset: int,
    limit: int,
) -> OutputChunk:
    """``limit`` bytes of output from ``offset``, read as ``who``.

    A waiting job has no output yet, whatever is at its path: a file there belongs to
    an earlier job of the same name (``--output=run.out``), which Slurm truncates when
    this one starts. So it is not read, and a reader never gets an earlier job's lines.
    """
    check_may_read(detail, who)
    path = output_path(detail, stream)
    if job_waiting(detail):
        size, data = 0, b""
        offset = 0
    else:
        try:
            reader = AsUser(runas, who.username)
            head, data = reader.read_output(path, offset=offset, length=limit)
            size = head.size
        except NotFound:
            if job_finished(detail):
                raise
            size, data = 0, b""  # not started yet: no output so far
    next_offset = offset + len(data)
    return OutputChunk(
        job_id=detail.job.id if detail.job else detail.accounting.id,  # type: ignore[union-attr]
        stream=stream,
        path=path,
        offset=offset,
        next_offset=next_offset,
        size=size,
        data=data.decode("utf-8", "replace"),
        eof=next_offset >= size,
        finished=job_finished(detail),
    )
