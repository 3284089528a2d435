"""Slurm output -> typed models. The only code that knows Slurm's field names.

JSON output arrives through the msgspec structs in :mod:`hpcportal.slurm.wire`;
``scontrol -o`` lines and ``sacctmgr``/``sshare`` ``--parsable2`` tables are read
by header, so a column added by a newer Slurm does not shift the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from hpcportal.slurm import wire
from hpcportal.slurm.models import (
    QOS,
    AccountingRecord,
    Association,
    FairshareEntry,
    Job,
    JobArray,
    JobPrivate,
    Node,
    Partition,
)
from hpcportal.slurm.states import job_status, node_status

_UNSET_WORDS = frozenset({"", "none", "n/a", "unlimited", "infinite", "(null)", "all"})


# --- small value helpers -------------------------------------------------------


def num(value: wire.Num | wire.FNum) -> int | None:
    """An integer from a plain or ``{"set","infinite","number"}`` value; None if unset."""
    if value is None:
        return None
    if isinstance(value, wire.NoVal):
        return int(value.number) if value.set and not value.infinite else None
    return int(value)


def timestamp(value: wire.Num) -> datetime | None:
    seconds = num(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds and seconds > 0 else None


def text(value: str | None) -> str | None:
    """Slurm writes "None", "(null)" or "" for nothing; make that None."""
    if value is None or value.strip().lower() in ("", "none", "(null)", "n/a"):
        return None
    return value


def first_state(value: wire.State) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def _s(value: str | None) -> str:
    return value or ""


def _opt(value: str | None) -> str | None:
    return value or None


def parse_tres(value: str | None) -> dict[str, str]:
    """``"cpu=2,mem=1000M,gres/gpu=1"`` -> ``{"cpu": "2", "mem": "1000M", "gres/gpu": "1"}``."""
    out: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, val = item.partition("=")
        if sep and key:
            out[key.strip()] = val.strip()
    return out


def memory_mb(value: str | None) -> int | None:
    """``"4000M"``, ``"4G"``, ``"1T"`` or ``"512"`` (MB) -> MB."""
    if not value:
        return None
    factors = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    unit = value[-1].upper()
    try:
        if unit in factors:
            return int(float(value[:-1]) * factors[unit])
        return int(float(value))
    except ValueError:
        return None


def gpus_in_tres(tres: dict[str, str]) -> int:
    """GPU count from a TRES dict, not double counting typed and untyped entries."""
    if "gres/gpu" in tres:
        return _int(tres["gres/gpu"]) or 0
    return sum(_int(v) or 0 for k, v in tres.items() if k.startswith("gres/gpu:"))


def gpus_in_gres(gres: str | None) -> int:
    """GPU count from a node's gres string: ``"gpu:2"``, ``"gpu:a100:4(S:0-1)"``."""
    total = 0
    for item in _split_gres(gres or ""):
        name, _, rest = item.partition(":")
        if name != "gpu":
            continue
        count = rest.split("(", 1)[0].rsplit(":", 1)[-1]
        total += _int(count) or 0
    return total


def _split_gres(gres: str) -> list[str]:
    """Split on commas that are not inside parentheses (``gpu:2(IDX:0,1)``)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in gres:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _int(value: str | None) -> int | None:
    if value is None or value.strip().lower() in _UNSET_WORDS:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def time_minutes(value: str | None) -> int | None:
    """Slurm durations (``"1-02:03:04"``, ``"30:00"``, ``"90"``) -> minutes; None if unlimited."""
    if value is None or value.strip().lower() in _UNSET_WORDS:
        return None
    days, _, clock = value.strip().rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts[:3]
        return int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0] + (1 if parts[1] else 0)
    hours, minutes, seconds = parts[:3]
    return hours * 60 + minutes + (1 if seconds else 0)


def split_list(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def bitmap_to_ranges(hex_bitmap: str) -> str:
    """sacct's array bitmap (``"0x3F"``) -> ``"0-5"``."""
    try:
        bits = int(hex_bitmap, 16)
    except ValueError:
        return hex_bitmap
    indices = [i for i in range(bits.bit_length()) if bits >> i & 1]
    return compress_ranges(indices)


def compress_ranges(indices: Iterable[int]) -> str:
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


# --- jobs ------------------------------------------------------------------------


def parse_squeue(raw: bytes) -> list[Job]:
    """``squeue --json`` -> jobs, in Slurm's order."""
    return [job_from_wire(j) for j in wire.squeue_decoder.decode(raw).jobs]


class JobParser:
    """Parses ``squeue --json`` and reuses the model of every job that did not change.

    Between two refreshes most of a large queue is unchanged. Decoding with msgspec is
    cheap; building a validated model per job is not. Wire records are frozen structs
    that compare by value, so an unchanged job keeps its previous ``Job`` object and
    only new or changed jobs are built again. Not thread-safe: one refresher uses it.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[wire.WireJob, Job]] = {}
        self.reused = 0
        self.built = 0

    def parse(self, raw: bytes) -> list[Job]:
        previous, current = self._previous, {}
        jobs: list[Job] = []
        reused = 0
        for record in wire.squeue_decoder.decode(raw).jobs:
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


def job_from_wire(j: wire.WireJob) -> Job:
    state = first_state(j.job_state)
    reason = text(j.state_reason)
    array, display_id = _array_of(j)
    tres_req = parse_tres(j.tres_req_str)
    tres_alloc = parse_tres(j.tres_alloc_str)
    cpus = num(j.cpus) or 0
    raw_exit = num(j.exit_code)
    return Job(
        id=display_id,
        job_id=j.job_id,
        array=array,
        name=_s(j.name),
        user=j.user_name or str(j.user_id),
        group=_opt(j.group_name),
        account=_opt(j.account),
        partition=_s(j.partition),
        qos=_opt(j.qos),
        state=state,
        status=job_status(state, reason),
        reason=reason,
        priority=num(j.priority),
        nodes=_opt(j.nodes),
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
        exit_code=(raw_exit >> 8) & 0xFF if raw_exit is not None else None,
        signal=(raw_exit & 0x7F) or None if raw_exit is not None else None,
        batch_host=_opt(j.batch_host),
        private=JobPrivate(
            work_dir=_opt(j.current_working_directory),
            stdout=_opt(j.standard_output),
            stderr=_opt(j.standard_error),
            stdin=_opt(j.standard_input),
            command=_opt(j.command),
            comment=_opt(j.comment),
        ),
    )


def _array_of(j: wire.WireJob) -> tuple[JobArray | None, str]:
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


def _job_memory(j: wire.WireJob, cpus: int, tres: dict[str, str]) -> int | None:
    per_node = num(j.memory_per_node)
    if per_node:
        return per_node
    per_cpu = num(j.memory_per_cpu)
    if per_cpu:
        return per_cpu * max(cpus, 1)
    return memory_mb(tres.get("mem"))


# --- nodes and partitions -----------------------------------------------------------


def parse_sinfo(raw: bytes) -> list[Node]:
    """``sinfo --json`` -> nodes, sorted by name."""
    nodes = [node_from_wire(n) for n in wire.sinfo_decoder.decode(raw).nodes]
    return sorted(nodes, key=lambda n: n.name)


def node_from_wire(n: wire.WireNode) -> Node:
    state = first_state(n.state)
    flags = list(n.state_flags or ()) + (n.state[1:] if isinstance(n.state, list) else [])
    load = num(n.cpu_load)
    features = n.features if isinstance(n.features, list) else split_list(n.features)
    return Node(
        name=n.name,
        hostname=_opt(n.hostname),
        address=_opt(n.address),
        state=state.lower(),
        flags=flags,
        status=node_status(state, flags),
        partitions=list(n.partitions or ()),
        cpus_total=num(n.cpus) or 0,
        cpus_allocated=num(n.alloc_cpus) or 0,
        cpus_idle=num(n.idle_cpus) or 0,
        cpu_load=load / 100 if load is not None else None,
        memory_total_mb=num(n.real_memory) or 0,
        memory_allocated_mb=num(n.alloc_memory) or 0,
        memory_free_mb=num(n.free_memory),
        gpus_total=gpus_in_gres(n.gres),
        gpus_allocated=gpus_in_gres(n.gres_used),
        gres=_opt(n.gres),
        gres_used=_opt(n.gres_used),
        features=features,
        reason=_opt(n.reason),
        reason_set_by=n.reason_set_by_user or None,
        reason_time=timestamp(n.reason_changed_at),
        boot_time=timestamp(n.boot_time),
        last_busy=timestamp(n.last_busy),
        slurmd_version=_opt(n.slurmd_version),
        architecture=_opt(n.architecture),
        operating_system=_opt(n.operating_system),
    )


def parse_oneliner(line: str) -> dict[str, str]:
    """One ``scontrol -o show ...`` record -> ``{Key: value}``."""
    out: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
        elif out:
            # A value with a space in it continues the previous key.
            last = next(reversed(out))
            out[last] = f"{out[last]} {token}"
    return out


def parse_partitions(raw: bytes) -> list[Partition]:
    """``scontrol -o show partition`` -> partitions, in Slurm's order."""
    lines = raw.decode("utf-8", "replace").splitlines()
    return [partition_from_fields(parse_oneliner(ln)) for ln in lines if ln.strip()]


def partition_from_fields(f: dict[str, str]) -> Partition:
    def allow(key: str) -> list[str] | None:
        value = f.get(key)
        return None if value is None or value.upper() == "ALL" else split_list(value)

    return Partition(
        name=f.get("PartitionName", ""),
        state=f.get("State", "UNKNOWN"),
        is_default=f.get("Default") == "YES",
        nodes=text(f.get("Nodes")),
        total_nodes=_int(f.get("TotalNodes")) or 0,
        total_cpus=_int(f.get("TotalCPUs")) or 0,
        max_time_minutes=time_minutes(f.get("MaxTime")),
        default_time_minutes=time_minutes(f.get("DefaultTime")),
        max_nodes=_int(f.get("MaxNodes")),
        max_mem_per_node_mb=_int(f.get("MaxMemPerNode")),
        default_mem_per_cpu_mb=_int(f.get("DefMemPerCPU")),
        allow_accounts=allow("AllowAccounts"),
        allow_groups=allow("AllowGroups"),
        allow_qos=allow("AllowQos"),
        qos=text(f.get("QoS")),
        tres=parse_tres(f.get("TRES")),
        hidden=f.get("Hidden") == "YES",
    )


# --- accounting, QoS, associations, fairshare --------------------------------------


def parse_table(raw: bytes) -> list[dict[str, str]]:
    """A ``--parsable2`` table with its header line -> rows keyed by header."""
    lines = [ln for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("|")]
    return [dict(zip(header, ln.split("|"), strict=False)) for ln in lines[1:]]


def parse_qos(raw: bytes) -> list[QOS]:
    return [
        QOS(
            name=r["Name"],
            priority=_int(r.get("Priority")) or 0,
            max_wall_minutes=time_minutes(r.get("MaxWall")),
            max_tres_per_user=parse_tres(r.get("MaxTRESPU")),
            max_jobs_per_user=_int(r.get("MaxJobsPU")),
            max_submit_per_user=_int(r.get("MaxSubmitPU")),
            grp_tres=parse_tres(r.get("GrpTRES")),
            preempt=split_list(r.get("Preempt")),
            flags=split_list(r.get("Flags")),
        )
        for r in parse_table(raw)
    ]


def parse_associations(raw: bytes) -> list[Association]:
    return [
        Association(
            cluster=r.get("Cluster", ""),
            account=r.get("Account", ""),
            user=r.get("User") or None,
            parent=r.get("ParentName") or r.get("Par Name") or None,
            share=r.get("Share") or None,
            qos=split_list(r.get("QOS")),
            default_qos=r.get("Def QOS") or None,
            max_jobs=_int(r.get("MaxJobs")),
            max_submit=_int(r.get("MaxSubmit")),
            grp_tres=parse_tres(r.get("GrpTRES")),
            max_tres=parse_tres(r.get("MaxTRES")),
            max_wall_minutes=time_minutes(r.get("MaxWall")),
        )
        for r in parse_table(raw)
    ]


def parse_sshare(raw: bytes) -> list[FairshareEntry]:
    return [
        FairshareEntry(
            account=r.get("Account", "").strip(),
            user=(r.get("User") or "").strip() or None,
            raw_shares=_int(r.get("RawShares")),
            norm_shares=_float(r.get("NormShares")),
            raw_usage=_int(r.get("RawUsage")),
            norm_usage=_float(r.get("NormUsage")),
            effective_usage=_float(r.get("EffectvUsage")),
            fairshare=_float(r.get("FairShare")),
            level_fs=_float(r.get("LevelFS")),
        )
        for r in parse_table(raw)
    ]


def parse_sacct(raw: bytes) -> list[AccountingRecord]:
    """``sacct --json`` -> one record per job (steps are folded into the job)."""
    return [record_from_wire(j) for j in wire.sacct_decoder.decode(raw).jobs]


def record_from_wire(j: wire.WireAcctJob) -> AccountingRecord:
    state = first_state(j.state.current) if j.state else ""
    reason = text(j.state.reason) if j.state else None
    array, display_id = _acct_array_of(j)
    t = j.time or wire.AcctTime()
    alloc = {x.type if not x.name else f"{x.type}/{x.name}": num(x.count) for x in _tres(j)}
    cpu_time = None
    if t.total is not None:
        cpu_time = (num(t.total.seconds) or 0) + (num(t.total.microseconds) or 0) / 1e6
    exit_code = num(j.exit_code.return_code) if j.exit_code else None
    return AccountingRecord(
        id=display_id,
        job_id=j.job_id,
        array=array,
        name=_s(j.name),
        user=_s(j.user),
        group=_opt(j.group),
        account=_opt(j.account),
        partition=_opt(j.partition),
        qos=_opt(j.qos),
        state=state,
        status=job_status(state, reason),
        reason=reason,
        exit_code=exit_code,
        nodes=text(j.nodes),
        node_count=num(j.allocation_nodes) or 0,
        cpus_requested=num(j.required.cpus) or 0 if j.required else 0,
        memory_requested_mb=num(j.required.memory) or None if j.required else None,
        tres_allocated={k: v for k, v in alloc.items() if v is not None},
        time_limit_minutes=num(t.limit),
        submit_time=timestamp(t.submission),
        eligible_time=timestamp(t.eligible),
        start_time=timestamp(t.start),
        end_time=timestamp(t.end),
        elapsed_seconds=num(t.elapsed) or 0,
        cpu_time_seconds=cpu_time,
        work_dir=_opt(j.working_directory),
        comment=_opt(j.comment.job) if j.comment else None,
    )


def _tres(j: wire.WireAcctJob) -> list[wire.Tres]:
    return list(j.tres.allocated or ()) if j.tres else []


def _acct_array_of(j: wire.WireAcctJob) -> tuple[JobArray | None, str]:
    a = j.array
    parent = num(a.job_id) if a else None
    if a is None or not parent:
        return None, str(j.job_id)
    task = num(a.task_id)
    if task is None:
        spec = bitmap_to_ranges(a.task) if a.task else ""
        return JobArray(job_id=parent, pending_tasks=spec or None), f"{parent}_[{spec}]"
    return JobArray(job_id=parent, task_id=task), f"{parent}_{task}"
