"""slurmctld's scheduler statistics (``sdiag``), decoded strictly into ``SchedulerStats``.

- 22.05 (and 23.02) print text only for the portal: ``sdiag`` with no option. Lines are
  read by their label inside their section (header, main scheduler, backfill, RPCs by
  message type, RPCs by user), so a label that moved or was renamed fails loudly.
  Slurm prints the means (``Mean cycle``, ``Depth Mean``) only once a cycle has run:
  they are required then, and absent (``None``) before.
- From 23.11 ``sdiag --json=vX`` in the cluster's chosen format (v0.0.40 to v0.0.45 share
  the ``statistics`` object read here), with the ``meta`` check of ``parse.decoding``.

Times are microseconds, as Slurm counts them. Whoever runs it: slurmctld answers any
user unless ``PrivateData`` hides usage; a refusal is the typed 403 of the executor.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
from pydantic import BaseModel

from hpcportal.slurm import formats, wire
from hpcportal.slurm.wire import Meta, NoVal


class RpcByType(BaseModel):
    """One RPC message type: how many slurmctld served and their time (microseconds)."""

    message_type: str
    type_id: int
    count: int
    average_us: int
    total_us: int


class RpcByUser(BaseModel):
    """One user's RPCs to slurmctld (``root`` and the portal's service account too)."""

    user: str
    user_id: int
    count: int
    average_us: int
    total_us: int


class SchedulerStats(BaseModel):
    """What ``sdiag`` says at one moment; counters run since ``data_since`` (midnight
    UTC, slurmctld's start, or the last ``sdiag --reset``)."""

    sampled_at: datetime
    data_since: datetime
    server_thread_count: int
    agent_queue_size: int
    agent_count: int
    agent_thread_count: int
    dbd_agent_queue_size: int
    jobs_submitted: int
    jobs_started: int
    jobs_completed: int
    jobs_canceled: int
    jobs_failed: int
    jobs_pending: int
    jobs_running: int
    #: The main scheduler: last, max and mean cycle (µs), cycles run, mean depth.
    schedule_cycle_last: int
    schedule_cycle_max: int
    schedule_cycle_mean: int | None
    schedule_cycle_count: int
    schedule_cycle_mean_depth: int | None
    schedule_queue_length: int
    #: The backfill scheduler: last, max and mean cycle (µs), cycles, depth.
    backfill_cycle_last: int
    #: None: not printed (data_parser v0.0.40).
    backfill_cycle_max: int | None
    backfill_cycle_mean: int | None
    backfill_cycle_count: int
    backfill_last_depth: int
    backfill_depth_mean: int | None
    backfill_queue_length: int
    backfilled_jobs: int
    rpcs_by_type: list[RpcByType]
    rpcs_by_user: list[RpcByUser]


# --- text (22.05, 23.02) ----------------------------------------------------------------

_STAMP = re.compile(r"\((\d+)\)\s*$")
_RPC_TYPE = re.compile(
    r"^(?P<name>\S+)\s*\(\s*(?P<id>\d+)\)\s+count:(?P<count>\d+)\s+ave_time:(?P<ave>\d+)"
    r"\s+total_time:(?P<total>\d+)"
)
_RPC_USER = re.compile(
    r"^(?P<name>\S+)\s*\(\s*(?P<id>\d+)\)\s+count:(?P<count>\d+)\s+ave_time:(?P<ave>\d+)"
    r"\s+total_time:(?P<total>\d+)"
)
_SECTIONS = {
    "Main schedule statistics": "main",
    "Main scheduler exit": "main-exit",
    "Backfilling stats": "backfill",
    "Backfill exit": "backfill-exit",
    "Latency for": "latency",
    "Remote Procedure Call statistics by message type": "rpc-type",
    "Remote Procedure Call statistics by user": "rpc-user",
    "Pending RPC statistics": "pending",
}


class Unreadable(ValueError):
    """sdiag printed something this module does not read."""


class _Fields:
    def __init__(self, section: str, values: dict[str, str]) -> None:
        self.section = section
        self.values = values

    def text(self, label: str) -> str:
        try:
            return self.values[label]
        except KeyError:
            raise Unreadable(f"no {label!r} in sdiag's {self.section} section") from None

    def count(self, label: str) -> int:
        value = self.text(label)
        if not value.isdigit():
            raise Unreadable(f"sdiag's {label!r} is {value!r}, not a count")
        return int(value)

    def when(self, label: str) -> datetime:
        found = _STAMP.search(self.text(label))
        if found is None:
            raise Unreadable(f"sdiag's {label!r} has no (Unix time)")
        return datetime.fromtimestamp(int(found.group(1)), UTC)

    def mean(self, label: str, cycles: int) -> int | None:
        """Printed once a cycle ran; required then."""
        return self.count(label) if cycles > 0 else None


def parse_text(raw: bytes) -> SchedulerStats:
    """``sdiag`` as 22.05 prints it. Raises ``Unreadable`` for a missing or odd line."""
    sections: dict[str, dict[str, str]] = {"header": {}}
    rpcs: dict[str, list[re.Match[str]]] = {"rpc-type": [], "rpc-user": []}
    current = "header"
    seen = {current}
    for line in raw.decode("utf-8", "replace").splitlines():
        text = line.strip()
        if not text or text.startswith("****"):
            continue
        opened = next((name for head, name in _SECTIONS.items() if text.startswith(head)), None)
        if opened is not None and not line.startswith("\t"):
            current = opened
            seen.add(current)
            if current == "latency":
                sections.setdefault(current, {})["latency"] = text
            continue
        if current in rpcs:
            found = (_RPC_TYPE if current == "rpc-type" else _RPC_USER).match(text)
            if found is None:
                raise Unreadable(f"sdiag's RPC line {text!r} is not name (id) count ave total")
            rpcs[current].append(found)
            continue
        label, colon, value = text.partition(":")
        if not colon:
            if current == "pending":
                continue  # "No pending RPCs"
            raise Unreadable(f"sdiag line {text!r} is not label: value")
        values = sections.setdefault(current, {})
        if current == "header" and label.startswith("sdiag output at"):
            label, value = "sdiag output at", label.removeprefix("sdiag output at") + value
        elif current == "header" and label.startswith("Data since"):
            label, value = "Data since", label.removeprefix("Data since") + value
        if label.strip() in values:
            raise Unreadable(f"sdiag prints {label.strip()!r} twice in one section")
        values[label.strip()] = value.strip()
    for needed in ("main", "backfill", "rpc-type", "rpc-user"):
        if needed not in seen:
            raise Unreadable(f"sdiag printed no {needed} section")
    head = _Fields("header", sections["header"])
    main = _Fields("main scheduler", sections.get("main", {}))
    bf = _Fields("backfill", sections.get("backfill", {}))
    cycles, bf_cycles = main.count("Total cycles"), bf.count("Total cycles")
    return SchedulerStats(
        sampled_at=head.when("sdiag output at"),
        data_since=head.when("Data since"),
        server_thread_count=head.count("Server thread count"),
        agent_queue_size=head.count("Agent queue size"),
        agent_count=head.count("Agent count"),
        agent_thread_count=head.count("Agent thread count"),
        dbd_agent_queue_size=head.count("DBD Agent queue size"),
        jobs_submitted=head.count("Jobs submitted"),
        jobs_started=head.count("Jobs started"),
        jobs_completed=head.count("Jobs completed"),
        jobs_canceled=head.count("Jobs canceled"),
        jobs_failed=head.count("Jobs failed"),
        jobs_pending=head.count("Jobs pending"),
        jobs_running=head.count("Jobs running"),
        schedule_cycle_last=main.count("Last cycle"),
        schedule_cycle_max=main.count("Max cycle"),
        schedule_cycle_mean=main.mean("Mean cycle", cycles),
        schedule_cycle_count=cycles,
        schedule_cycle_mean_depth=main.mean("Mean depth cycle", cycles),
        schedule_queue_length=main.count("Last queue length"),
        backfill_cycle_last=bf.count("Last cycle"),
        backfill_cycle_max=bf.count("Max cycle"),
        backfill_cycle_mean=bf.mean("Mean cycle", bf_cycles),
        backfill_cycle_count=bf_cycles,
        backfill_last_depth=bf.count("Last depth cycle"),
        backfill_depth_mean=bf.mean("Depth Mean", bf_cycles),
        backfill_queue_length=bf.count("Last queue length"),
        backfilled_jobs=bf.count("Total backfilled jobs (since last slurm start)"),
        rpcs_by_type=[
            RpcByType(
                message_type=m["name"],
                type_id=int(m["id"]),
                count=int(m["count"]),
                average_us=int(m["ave"]),
                total_us=int(m["total"]),
            )
            for m in rpcs["rpc-type"]
        ],
        rpcs_by_user=[
            RpcByUser(
                user=m["name"],
                user_id=int(m["id"]),
                count=int(m["count"]),
                average_us=int(m["ave"]),
                total_us=int(m["total"]),
            )
            for m in rpcs["rpc-user"]
        ],
    )


# --- JSON (23.11 on: data_parser v0.0.40 to v0.0.45) ---------------------------------------


class WireRpcType(msgspec.Struct, frozen=True):
    type_id: int
    message_type: str
    count: int
    total_time: int
    average_time: NoVal


class WireRpcUser(msgspec.Struct, frozen=True):
    user_id: int
    user: str
    count: int
    total_time: int
    average_time: NoVal


class WireStatistics(msgspec.Struct, frozen=True):
    """The fields of ``statistics`` the portal reads; each required, one type."""

    req_time: NoVal
    req_time_start: NoVal
    server_thread_count: int
    agent_queue_size: int
    agent_count: int
    agent_thread_count: int
    dbd_agent_queue_size: int
    jobs_submitted: int
    jobs_started: int
    jobs_completed: int
    jobs_canceled: int
    jobs_failed: int
    jobs_pending: int
    jobs_running: int
    schedule_cycle_last: int
    schedule_cycle_max: int
    schedule_cycle_mean: int
    schedule_cycle_total: int
    schedule_cycle_mean_depth: int
    schedule_queue_length: int
    bf_cycle_last: int
    bf_cycle_max: int
    bf_cycle_mean: int
    bf_cycle_counter: int
    bf_last_depth: int
    bf_depth_mean: int
    bf_queue_len: int
    bf_backfilled_jobs: int
    rpcs_by_message_type: list[WireRpcType]
    rpcs_by_user: list[WireRpcUser]


class WireSdiag(msgspec.Struct, frozen=True):
    statistics: WireStatistics
    meta: Meta | None = None


class WireRpcType0040(WireRpcType, frozen=True):
    """v0.0.40 prints a plain average; v0.0.41 on a NoVal object."""

    average_time: int  # type: ignore[assignment]


class WireRpcUser0040(WireRpcUser, frozen=True):
    average_time: int  # type: ignore[assignment]


class WireStatistics0040(WireStatistics, frozen=True, kw_only=True):
    """v0.0.40 (24.11) prints no ``bf_cycle_max``."""

    bf_cycle_max: int | None = None  # type: ignore[assignment]
    rpcs_by_message_type: list[WireRpcType0040]  # type: ignore[assignment]
    rpcs_by_user: list[WireRpcUser0040]  # type: ignore[assignment]


class WireSdiag0040(msgspec.Struct, frozen=True):
    statistics: WireStatistics0040
    meta: Meta | None = None


_decoders: dict[str, msgspec.json.Decoder[WireSdiag] | msgspec.json.Decoder[WireSdiag0040]] = {
    "v0.0.40": msgspec.json.Decoder(WireSdiag0040),
    **{f"v0.0.4{n}": msgspec.json.Decoder(WireSdiag) for n in range(1, 6)},
}


def _moment(value: NoVal, what: str) -> datetime:
    if not value.set or value.infinite:
        raise Unreadable(f"sdiag's {what} is not set")
    return datetime.fromtimestamp(value.number, UTC)


def _average(value: NoVal | int) -> int:
    if isinstance(value, int):
        return value
    return value.number if value.set and not value.infinite else 0


def parse_json(raw: bytes, data_format: str | None) -> SchedulerStats:
    """``sdiag --json=vX`` (v0.0.40 to v0.0.45). Raises ``msgspec.ValidationError`` or
    ``Unreadable`` for another shape or a document in another format."""
    if data_format is None:
        data_format = formats.format_of_meta(wire.envelope_decoder.decode(raw).meta)
    decoder = _decoders.get(data_format or "")
    if decoder is None:
        readable = ", ".join(_decoders)
        raise Unreadable(f"sdiag --json is read in {readable}, not {data_format}")
    out = decoder.decode(raw)
    said = formats.format_of_meta(out.meta)
    if said is not None and said != data_format:
        raise Unreadable(f"asked sdiag for JSON format {data_format}, got {said}")
    s = out.statistics
    # 0 cycles: Slurm reports 0 as the means; the portal says "none yet" as text does.
    return SchedulerStats(
        sampled_at=_moment(s.req_time, "req_time"),
        data_since=_moment(s.req_time_start, "req_time_start"),
        server_thread_count=s.server_thread_count,
        agent_queue_size=s.agent_queue_size,
        agent_count=s.agent_count,
        agent_thread_count=s.agent_thread_count,
        dbd_agent_queue_size=s.dbd_agent_queue_size,
        jobs_submitted=s.jobs_submitted,
        jobs_started=s.jobs_started,
        jobs_completed=s.jobs_completed,
        jobs_canceled=s.jobs_canceled,
        jobs_failed=s.jobs_failed,
        jobs_pending=s.jobs_pending,
        jobs_running=s.jobs_running,
        schedule_cycle_last=s.schedule_cycle_last,
        schedule_cycle_max=s.schedule_cycle_max,
        schedule_cycle_mean=s.schedule_cycle_mean if s.schedule_cycle_total else None,
        schedule_cycle_count=s.schedule_cycle_total,
        schedule_cycle_mean_depth=(s.schedule_cycle_mean_depth if s.schedule_cycle_total else None),
        schedule_queue_length=s.schedule_queue_length,
        backfill_cycle_last=s.bf_cycle_last,
        backfill_cycle_max=s.bf_cycle_max,
        backfill_cycle_mean=s.bf_cycle_mean if s.bf_cycle_counter else None,
        backfill_cycle_count=s.bf_cycle_counter,
        backfill_last_depth=s.bf_last_depth,
        backfill_depth_mean=s.bf_depth_mean if s.bf_cycle_counter else None,
        backfill_queue_length=s.bf_queue_len,
        backfilled_jobs=s.bf_backfilled_jobs,
        rpcs_by_type=[
            RpcByType(
                message_type=r.message_type,
                type_id=r.type_id,
                count=r.count,
                average_us=_average(r.average_time),
                total_us=r.total_time,
            )
            for r in s.rpcs_by_message_type
        ],
        rpcs_by_user=[
            RpcByUser(
                user=r.user,
                user_id=r.user_id,
                count=r.count,
                average_us=_average(r.average_time),
                total_us=r.total_time,
            )
            for r in s.rpcs_by_user
        ],
    )
