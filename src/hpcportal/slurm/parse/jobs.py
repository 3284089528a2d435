"""``squeue --json`` records -> :class:`Job` models, reusing unchanged ones."""

from __future__ import annotations

from hpcportal.slurm import hostlist, wire_v0040
from hpcportal.slurm.models import Job, JobArray, JobPrivate
from hpcportal.slurm.parse.decoding import WireJob, decode, pick_squeue
from hpcportal.slurm.parse.values import (
    first_state,
    gpus_in_tres,
    memory_mb,
    num,
    or_empty,
    or_none,
    parse_tres,
    text,
    timestamp,
)
from hpcportal.slurm.states import job_status


def parse_squeue(raw: bytes, data_format: str | None = None) -> list[Job]:
    """``squeue --json`` -> jobs, in Slurm's order (a parser with nothing to reuse)."""
    return JobParser().parse(raw, data_format)


class JobParser:
    """Parses ``squeue --json`` and reuses the model of every job that did not change.

    Between two refreshes most of a large queue is unchanged. Decoding with msgspec is
    cheap; building a validated model per job is not. Wire records are frozen structs
    that compare by value, so an unchanged job keeps its previous ``Job`` object and
    only new or changed jobs are built again. Not thread-safe: one refresher uses it.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[WireJob, Job]] = {}
        self.reused = 0
        self.built = 0

    def parse(self, raw: bytes, data_format: str | None = None) -> list[Job]:
        previous, current = self._previous, {}
        jobs: list[Job] = []
        reused = 0
        records: list[WireJob] = decode(raw, data_format, pick_squeue).jobs
        for record in records:
            hit = previous.get(record.job_id)
            if hit is not None and hit[0] == record:
                job = hit[1]
                reused += 1
            else:
                job = job_from_wire(record)
            current[record.job_id] = (record, job)
            jobs.append(job)
        self._previous = current
        self.reused, self.built = reused, len(jobs) - reused
        return jobs


def job_from_wire(j: WireJob) -> Job:
    state = first_state(j.job_state)
    reason = text(j.state_reason)
    array, display_id = _array_of(j)
    tres_req = parse_tres(j.tres_req_str)
    tres_alloc = parse_tres(j.tres_alloc_str)
    cpus = num(j.cpus) or 0
    exit_code, signal = _job_exit(j.exit_code)
    return Job(
        id=display_id,
        job_id=j.job_id,
        array=array,
        name=or_empty(j.name),
        user=j.user_name or str(j.user_id),
        group=or_none(j.group_name),
        account=or_none(j.account),
        partition=or_empty(j.partition),
        qos=or_none(j.qos),
        state=state,
        status=job_status(state, reason),
        reason=reason,
        priority=num(j.priority),
        nodes=or_none(j.nodes),
        node_names=hostlist.expand(j.nodes),
        node_count=num(j.node_count) or 0,
        cpus=cpus,
        tasks=num(j.tasks) or 0,
        memory_mb=_job_memory(j, cpus, tres_req),
        gpus=gpus_in_tres(tres_alloc or tres_req),
        tres_requested=tres_req,
        tres_allocated=tres_alloc,
        time_limit_minutes=num(j.time_limit),
        submit_time=timestamp(j.submit_time),
        eligible_time=timestamp(j.eligible_time),
        start_time=timestamp(j.start_time),
        end_time=timestamp(j.end_time),
        dependency=text(j.dependency),
        exit_code=exit_code,
        signal=signal,
        batch_host=or_none(j.batch_host),
        private=JobPrivate(
            work_dir=or_none(j.current_working_directory),
            stdout=or_none(j.standard_output),
            stderr=or_none(j.standard_error),
            stdin=or_none(j.standard_input),
            command=or_none(j.command),
            comment=or_none(j.comment),
        ),
    )


def _job_exit(value: int | wire_v0040.ExitCode | None) -> tuple[int | None, int | None]:
    """(exit code, signal) from a raw wait status (22.05, 23.02) or an exit-code object."""
    if value is None:
        return None, None
    if isinstance(value, int):
        return (value >> 8) & 0xFF, (value & 0x7F) or None
    return num(value.return_code), num(value.signal.id) or None


def _array_of(j: WireJob) -> tuple[JobArray | None, str]:
    parent = num(j.array_job_id) or 0
    if parent <= 0:
        return None, str(j.job_id)
    task = num(j.array_task_id)
    limit = num(j.array_max_tasks) or None
    if task is None:
        spec = j.array_task_string or ""
        return (
            JobArray(job_id=parent, pending_tasks=spec or None, max_running=limit),
            f"{parent}_[{spec}]" if spec else str(parent),
        )
    return JobArray(job_id=parent, task_id=task, max_running=limit), f"{parent}_{task}"


def _job_memory(j: WireJob, cpus: int, tres: dict[str, str]) -> int | None:
    per_node = num(j.memory_per_node)
    if per_node:
        return per_node
    per_cpu = num(j.memory_per_cpu)
    if per_cpu:
        return per_cpu * max(cpus, 1)
    return memory_mb(tres.get("mem"))
