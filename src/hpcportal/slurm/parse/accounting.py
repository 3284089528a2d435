"""``sacct --json`` records -> :class:`AccountingRecord`, one per job (steps folded)."""

from __future__ import annotations

from hpcportal.slurm import hostlist, wire_v0040
from hpcportal.slurm.models import AccountingRecord, JobArray
from hpcportal.slurm.parse.decoding import WireAcctJob, decode, pick_sacct
from hpcportal.slurm.parse.values import (
    bitmap_to_ranges,
    first_state,
    num,
    or_empty,
    or_none,
    text,
    timestamp,
)
from hpcportal.slurm.states import job_status


def parse_sacct(raw: bytes, data_format: str | None = None) -> list[AccountingRecord]:
    """``sacct --json`` -> one record per job (steps are folded into the job)."""
    records: list[WireAcctJob] = decode(raw, data_format, pick_sacct).jobs
    return [record_from_wire(j) for j in records]


def record_from_wire(j: WireAcctJob) -> AccountingRecord:
    state = first_state(j.state.current)
    reason = text(j.state.reason)
    array, display_id = _acct_array_of(j)
    t = j.time
    alloc = {x.type if not x.name else f"{x.type}/{x.name}": x.count for x in j.tres.allocated}
    cpu_time = (num(t.total.seconds) or 0) + (num(t.total.microseconds) or 0) / 1e6
    ec = j.exit_code
    exit_code = num(ec.return_code)
    signal = num(ec.signal.id) or None if isinstance(ec, wire_v0040.ExitCode) else None
    return AccountingRecord(
        id=display_id,
        job_id=j.job_id,
        array=array,
        name=or_empty(j.name),
        user=or_empty(j.user),
        group=or_none(j.group),
        account=or_none(j.account),
        partition=or_none(j.partition),
        qos=or_none(j.qos),
        state=state,
        status=job_status(state, reason),
        reason=reason,
        exit_code=exit_code,
        signal=signal,
        nodes=text(j.nodes),
        node_names=hostlist.expand(text(j.nodes)),
        node_count=num(j.allocation_nodes) or 0,
        cpus_requested=num(j.required.cpus) or 0,
        memory_requested_mb=_acct_memory(j),
        tres_allocated={k: v for k, v in alloc.items() if v is not None and v >= 0},
        time_limit_minutes=num(t.limit),
        submit_time=timestamp(t.submission),
        eligible_time=timestamp(t.eligible),
        start_time=timestamp(t.start),
        end_time=timestamp(t.end),
        elapsed_seconds=num(t.elapsed) or 0,
        cpu_time_seconds=cpu_time,
        work_dir=or_none(j.working_directory),
        comment=or_none(j.comment.job),
    )


def _acct_memory(j: WireAcctJob) -> int | None:
    """Requested memory in MB: one number up to 23.02; per node or per CPU from 23.11."""
    r = j.required
    if isinstance(r, wire_v0040.AcctRequired):
        per_node, per_cpu = num(r.memory_per_node), num(r.memory_per_cpu)
        if per_node:
            return per_node
        return per_cpu * max(r.cpus, 1) if per_cpu else None
    return num(r.memory) or None


def _acct_array_of(j: WireAcctJob) -> tuple[JobArray | None, str]:
    a = j.array
    parent = num(a.job_id)
    if not parent:
        return None, str(j.job_id)
    task = num(a.task_id)
    if task is None:
        spec = bitmap_to_ranges(a.task) if a.task else ""
        return JobArray(job_id=parent, pending_tasks=spec or None), f"{parent}_[{spec}]"
    return JobArray(job_id=parent, task_id=task), f"{parent}_{task}"
