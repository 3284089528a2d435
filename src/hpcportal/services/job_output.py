"""A job's output files, read as the user in bounded chunks.

The paths come from Slurm (the job's ``--output``/``--error`` patterns, expanded the
way Slurm expands them); the bytes are read through the run-as boundary, so the
file system decides who may read them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import Forbidden, NotFound
from hpcportal.runas import RunAs
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import JobDetail
from hpcportal.slurm.states import JobStatus

Stream = Literal["stdout", "stderr"]
_PATTERN = re.compile(r"%(\d*)([%AajJNnstux])")
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


def expand(pattern: str, fields: dict[str, str]) -> str:
    """Slurm's filename pattern (``%j``, ``%A_%a``, ``%x``, ``%5a``...) for one job."""

    def sub(match: re.Match[str]) -> str:
        width, key = match.group(1), match.group(2)
        if key == "%":
            return "%"
        value = fields.get(key, match.group(0))
        return value.zfill(int(width)) if width and value.isdigit() else value

    return _PATTERN.sub(sub, pattern)


NOT_YOURS = "Only the job's owner (and admins) can read its output."


def check_may_read(detail: JobDetail, who: Principal) -> None:
    """Output belongs to the job's owner; admins may try (the file system decides)."""
    owner = detail.job.user if detail.job else detail.accounting.user if detail.accounting else None
    if not (who.is_admin or owner == who.username):
        raise Forbidden(NOT_YOURS)


def output_path(detail: JobDetail, stream: Stream) -> str:
    """Where Slurm writes the job's stdout or stderr."""
    job, record = detail.job, detail.accounting
    if job is not None:
        private = job.private
        if private is None:
            raise Forbidden(NOT_YOURS)
        work_dir = private.work_dir or "/"
        chosen = private.stderr if stream == "stderr" and private.stderr else private.stdout
        array = job.array
        fields = {
            "j": str(job.job_id),
            "A": str(array.job_id if array else job.job_id),
            "a": str(array.task_id) if array and array.task_id is not None else "4294967294",
            "u": job.user,
            "x": job.name,
            "N": job.batch_host or next(iter(job.node_names), ""),
            "n": "0",
            "s": "batch",
            "t": "0",
            "J": f"{job.job_id}.batch",
        }
        is_array = array is not None
    elif record is not None:
        if record.work_dir is None:
            raise NotFound("Where the job writes its output is not known yet; try again shortly.")
        work_dir, chosen = record.work_dir, None
        array = record.array
        is_array = array is not None
        fields = {
            "j": str(record.job_id),
            "A": str(array.job_id if array else record.job_id),
            "a": str(array.task_id) if array and array.task_id is not None else "",
            "u": record.user,
            "x": record.name,
        }
    else:
        raise NotFound("No such job.")
    pattern = chosen or ("slurm-%A_%a.out" if is_array else "slurm-%j.out")
    path = expand(pattern, fields)
    return path if path.startswith("/") else f"{work_dir.rstrip('/')}/{path}"


def job_finished(detail: JobDetail) -> bool:
    if detail.job is not None:
        return detail.job.status in FINISHED
    return detail.accounting is not None and detail.accounting.status in FINISHED


def read_chunk(
    runas: RunAs,
    who: Principal,
    detail: JobDetail,
    stream: Stream,
    offset: int,
    limit: int,
) -> OutputChunk:
    """``limit`` bytes of output from ``offset``, read as ``who``."""
    check_may_read(detail, who)
    path = output_path(detail, stream)
    try:
        info, data = runas.read_file(who.username, path, offset=offset, length=limit)
    except NotFound:
        if job_finished(detail):
            raise
        info, data = {"size": 0}, b""  # not started yet: no output so far
    size = int(info["size"])
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
