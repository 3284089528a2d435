"""Slurm output -> typed models. The only code that knows Slurm's field names.

JSON output arrives through the strict msgspec structs of its format family
(:mod:`~hpcportal.slurm.wire` for 22.05, ``wire_v0039`` for 23.02, ``wire_v0040``
from 23.11; :mod:`~hpcportal.slurm.formats` picks one), and every family becomes
the same models here. A document that does not fit its format's structs raises
``msgspec.ValidationError`` naming the format and the field. ``scontrol -o`` lines
and ``sacctmgr``/``sshare`` ``--parsable2`` tables are read by header, so a column
added by a newer Slurm does not shift the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from hpcportal.slurm import formats, hostlist, wire, wire_v0039, wire_v0040
from hpcportal.slurm.models import (
    PRIVATE_DATA_FLAGS,
    QOS,
    AccountingRecord,
    Association,
    FairshareEntry,
    Job,
    JobArray,
    JobPrivate,
    Node,
    Partition,
    PrivateData,
    SlurmRoles,
)
from hpcportal.slurm.states import job_status, node_status

_UNSET_WORDS = frozenset({"", "none", "n/a", "unlimited", "infinite", "(null)", "all"})

WireJob = wire.WireJob | wire_v0039.WireJob | wire_v0040.WireJob
WireNode = wire.WireNode | wire_v0039.WireNode | wire_v0040.WireNode
WireAcctJob = wire.WireAcctJob | wire_v0039.WireAcctJob | wire_v0040.WireAcctJob
Number = int | wire.NoVal | None


# --- small value helpers -------------------------------------------------------


def num(value: Number) -> int | None:
    """An integer from a plain or ``{"set","infinite","number"}`` value; None if unset."""
    if value is None:
        return None
    if isinstance(value, wire.NoVal):
        return value.number if value.set and not value.infinite else None
    return value


def timestamp(value: Number) -> datetime | None:
    seconds = num(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds and seconds > 0 else None


def text(value: str | None) -> str | None:
    """Slurm writes "None", "(null)" or "" for nothing; make that None."""
    if value is None or value.strip().lower() in ("", "none", "(null)", "n/a"):
        return None
    return value


def first_state(value: str | list[str] | None) -> str:
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


# --- decoding by format ----------------------------------------------------------


def decode(raw: bytes, data_format: str | None, pick: Callable[[formats.Family], Any]) -> Any:
    """Decode ``raw`` with the strict structs of ``data_format`` (``pick`` chooses the
    command's decoder of a family) and check that the output says it is that format.

    Without ``data_format`` the document's own ``meta`` names it. A document with no
    meta at all (none that a supported Slurm prints) must fit one family exactly.
    """
    if data_format is None:
        data_format = formats.format_of_meta(wire.envelope_decoder.decode(raw).meta)
        if data_format is None:
            return _fit_any_family(raw, pick)
    family = formats.FAMILIES.get(data_format)
    if family is None:
        readable = ", ".join(reversed(formats.SUPPORTED_FORMATS))
        raise msgspec.ValidationError(
            f"JSON format {data_format} is not one the portal reads ({readable})"
        )
    try:
        out = pick(family).decode(raw)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"{data_format}: {exc}") from exc
    said = formats.format_of_meta(out.meta)
    if said is not None and said != data_format:
        raise msgspec.ValidationError(f"asked for JSON format {data_format}, got {said}")
    return out


def _fit_any_family(raw: bytes, pick: Callable[[formats.Family], Any]) -> Any:
    failures: list[str] = []
    for family in (formats.V0040, formats.V0039, formats.V0038):
        try:
            return pick(family).decode(raw)
        except msgspec.ValidationError as exc:
            failures.append(f"as {family.name}: {exc}")
    tried = "; ".join(failures)
    raise msgspec.ValidationError(f"output without meta fits no known format; {tried}")


def _squeue(family: formats.Family) -> Any:
    return family.squeue


def _nodes(family: formats.Family) -> Any:
    return family.nodes


def _sacct(family: formats.Family) -> Any:
    return family.sacct


# --- jobs ------------------------------------------------------------------------


def parse_squeue(raw: bytes, data_format: str | None = None) -> list[Job]:
    """``squeue --json`` -> jobs, in Slurm's order."""
    jobs: list[WireJob] = decode(raw, data_format, _squeue).jobs
    return [job_from_wire(j) for j in jobs]


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
        records: list[WireJob] = decode(raw, data_format, _squeue).jobs
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


# --- nodes and partitions -----------------------------------------------------------


def parse_nodes(raw: bytes, data_format: str | None = None) -> list[Node]:
    """``sinfo --json`` (22.05) or ``scontrol --json show nodes`` (23.02 on) -> nodes,
    sorted by name."""
    records: list[WireNode] = decode(raw, data_format, _nodes).nodes
    return sorted((node_from_wire(n) for n in records), key=lambda n: n.name)


#: The name of the 22.05 read, kept for callers and tests that use it.
parse_sinfo = parse_nodes


def node_from_wire(n: WireNode) -> Node:
    if isinstance(n, wire.WireNode):  # 22.05: one state word plus flags, sinfo's names
        state, flags = n.state, list(n.state_flags)
        idle, free, version = num(n.idle_cpus) or 0, num(n.free_memory), n.slurmd_version
        features = split_list(n.features)
    else:  # 23.02 on: a list of flags, scontrol's names
        state, flags = first_state(n.state), list(n.state[1:])
        idle, free, version = n.alloc_idle_cpus, num(n.free_mem), n.version
        features = list(n.features)
    load = num(n.cpu_load)
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
        cpus_idle=idle,
        cpu_load=load / 100 if load is not None else None,
        memory_total_mb=num(n.real_memory) or 0,
        memory_allocated_mb=num(n.alloc_memory) or 0,
        memory_free_mb=free,
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
        slurmd_version=_opt(version),
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
        node_names=hostlist.expand(text(f.get("Nodes"))),
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


def parse_sacct(raw: bytes, data_format: str | None = None) -> list[AccountingRecord]:
    """``sacct --json`` -> one record per job (steps are folded into the job)."""
    records: list[WireAcctJob] = decode(raw, data_format, _sacct).jobs
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
        work_dir=_opt(j.working_directory),
        comment=_opt(j.comment.job),
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


# --- privacy: PrivateData and Slurm's own roles ---------------------------------------

#: What Slurm looks for in a ``PrivateData`` value: it tests substrings (``strstr``),
#: so "job" and "jobs" are one flag and "all" is every flag.
_PRIVATE_DATA_STEMS = {
    "accounts": "account", "cloud": "cloud", "events": "event", "jobs": "job",
    "nodes": "node", "partitions": "partition", "reservations": "reservation",
    "usage": "usage", "users": "user",
}  # fmt: skip
_DBD_SECTION = "SlurmDBD configuration:"


def private_data_flags(value: str) -> frozenset[str]:
    """``"jobs,usage"`` -> ``{"jobs", "usage"}``, read the way Slurm reads its config."""
    words = {w.strip() for w in value.lower().split(",")}
    if "all" in words:
        return PRIVATE_DATA_FLAGS
    text = value.lower()
    return frozenset(flag for flag, stem in _PRIVATE_DATA_STEMS.items() if stem in text)


def parse_config(lines: Iterable[str]) -> dict[str, str]:
    """``Key = value`` lines (``scontrol show config``) -> a dict; other lines are skipped."""
    result: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() and " " not in name.strip():
            result.setdefault(name.strip(), value.strip())
    return result


def _private_data_of(config: dict[str, str], version_key: str) -> PrivateData:
    # "root(0)" -> "root"; a missing SlurmUser is root's, Slurm's default.
    user = config.get("SlurmUser", "root").split("(", 1)[0].strip() or "root"
    return PrivateData(
        flags=private_data_flags(config.get("PrivateData", "")),
        slurm_user=user,
        version=config.get(version_key, ""),
    )


def parse_controller_private_data(raw: bytes) -> PrivateData:
    """slurmctld's ``PrivateData`` and ``SlurmUser`` from ``scontrol show config``."""
    config = parse_config(raw.decode("utf-8", "replace").splitlines())
    if "PrivateData" not in config:
        raise ValueError("scontrol show config printed no PrivateData")
    return _private_data_of(config, "SLURM_VERSION")


def parse_database_private_data(raw: bytes) -> PrivateData:
    """slurmdbd's ``PrivateData`` and ``SlurmUser``: the part of ``sacctmgr show config``
    after "SlurmDBD configuration:" (before it come the client's own settings)."""
    lines = raw.decode("utf-8", "replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _DBD_SECTION)
    except StopIteration:
        raise ValueError("sacctmgr show config printed no SlurmDBD configuration") from None
    config = parse_config(lines[start + 1 :])
    if "PrivateData" not in config:
        raise ValueError("sacctmgr show config printed no PrivateData for slurmdbd")
    return _private_data_of(config, "SLURMDBD_VERSION")


def parse_roles(raw: bytes) -> SlurmRoles:
    """``sacctmgr --parsable2 show user withcoord format=user,adminlevel,coordinators``."""
    levels: dict[str, str] = {}
    coordinators: dict[str, frozenset[str]] = {}
    for row in parse_table(raw):
        user = row.get("User", "").strip()
        if not user:
            continue
        level = row.get("Admin", "").strip()
        if level and level != "None":
            levels[user] = level
        accounts = frozenset(split_list(row.get("Coord Accounts")))
        if accounts:
            coordinators[user] = accounts
    return SlurmRoles(admin_levels=levels, coordinators=coordinators)
