"""Reservations as administrators read and change them: typed values, the one place
their ``scontrol`` argv is built, and the strict reading of ``scontrol show reservation``.

Reads, per release (recorded in ``tests/fixtures/slurm/<release>/actions/``,
``record-admin-reservations.sh``):

- 22.05 has no ``scontrol --json``: ``scontrol -o show reservation`` prints one line
  of ``Key=value`` per reservation (``No reservations in the system`` for none), times
  in the clock of ``TZ`` (the executor sets UTC).
- From the v0.0.40 formats (23.11 on; 24.11 and 26.05 recorded) ``scontrol
  --json=vX show reservation``: ``reservations`` with ``start_time``/``end_time`` as
  ``{set, infinite, number}``, ``flags`` a list, ``users``/``accounts`` comma lists.
  23.02's v0.0.39 is read as text too (no recording of its JSON here).

Either way every field the portal reads is required; a reshaped output is
``SlurmOutputUnreadable`` (502), never an empty calendar.

Commands (``scontrol`` prints ``Reservation created: NAME`` / ``Reservation updated.``
on success; a refusal is ``Error creating the reservation: Invalid user id`` and the
like, exit 1, raised typed by the executor or ``SlurmAdmin.run``):

- ``scontrol create reservation ReservationName=N StartTime=T|now EndTime=T|Duration=M
  Nodes=LIST|NodeCnt=N [Users=a,b] [Accounts=a,b] [PartitionName=P] [Flags=A,B]``
- ``scontrol update ReservationName=N [StartTime=T] [EndTime=T] [Nodes=LIST]
  [Users=a,b | Users=-a,-b] [Accounts=...] [Flags=A,-B]``: a list set to nothing is
  written as the removal of each old name (Slurm keeps the field otherwise), a flag as
  ``+`` (added) or ``-`` (removed).
- ``scontrol delete ReservationName=N`` (prints nothing).

Slurm adds ``SPEC_NODES`` (nodes named) or ``PART_NODES`` itself; the portal manages
only the flags of ``RESERVATION_FLAGS`` and keeps the others as read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpcportal.errors import SlurmOutputUnreadable
from hpcportal.slurm import formats, hostlist, wire
from hpcportal.slurm.admin_actions import AdminCommand
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.parse.partitions import parse_oneliner

#: A reservation name the portal writes (Slurm allows more; it never needs quoting here).
RESV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A Unix user or Slurm account name.
_PRINCIPAL = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_PARTITION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NODES = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-\[\],]{0,499}$")
#: The flags the portal sets and clears (22.05 to 26.05 spell them so).
RESERVATION_FLAGS = frozenset(
    {
        "MAINT",
        "IGNORE_JOBS",
        "OVERLAP",
        "FLEX",
        "DAILY",
        "WEEKLY",
        "WEEKDAY",
        "WEEKEND",
        "MAGNETIC",
        "NO_HOLD_JOBS_AFTER",
    }
)
_MAX_MINUTES = 366 * 24 * 60
_TIME = "%Y-%m-%dT%H:%M:%S"
_NO_RESERVATIONS = "No reservations in the system"


def check_name(name: str) -> str:
    value = name.strip()
    if not RESV_NAME.fullmatch(value):
        raise ValueError(
            f"{name!r} is not a reservation name: 1-64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return value


def _names(value: Any, what: str, pattern: re.Pattern[str] = _PRINCIPAL) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out: list[str] = []
    for item in (str(v).strip() for v in items):
        if not item:
            continue
        if not pattern.fullmatch(item):
            raise ValueError(f"{item!r} is not a {what} name")
        if item not in out:
            out.append(item)
    return tuple(sorted(out))


def _flags(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out = set()
    for item in (str(v).strip().upper() for v in items):
        if item and item not in RESERVATION_FLAGS:
            known = ", ".join(sorted(RESERVATION_FLAGS))
            raise ValueError(f"{item!r} is not a reservation flag the portal sets ({known})")
        if item:
            out.add(item)
    return tuple(sorted(out))


#: The last year a reservation may start or end in (well inside what Python and
#: Slurm's clocks hold once a duration is added).
LAST_YEAR = 9000


def _utc(value: datetime) -> datetime:
    """A moment in UTC, to the second (what Slurm keeps)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    moment = aware.astimezone(UTC).replace(microsecond=0)
    if not 1970 <= moment.year <= LAST_YEAR:
        raise ValueError(f"give a time between the years 1970 and {LAST_YEAR}")
    return moment


def slurm_time(value: datetime) -> str:
    """``2027-01-05T08:00:00``: UTC, as scontrol reads it with ``TZ=UTC``."""
    return _utc(value).strftime(_TIME)


class Reservation(BaseModel):
    """A reservation as slurmctld has it."""

    model_config = ConfigDict(frozen=True)

    name: str
    start_time: datetime
    end_time: datetime
    nodes: str | None
    node_names: list[str]
    node_count: int
    partition: str | None
    users: tuple[str, ...]
    accounts: tuple[str, ...]
    #: Every flag as Slurm prints it (``SPEC_NODES`` too).
    flags: tuple[str, ...]

    @property
    def maintenance(self) -> bool:
        return "MAINT" in self.flags

    @property
    def managed_flags(self) -> tuple[str, ...]:
        """The flags the portal sets and clears (``RESERVATION_FLAGS``)."""
        return tuple(sorted(f for f in self.flags if f in RESERVATION_FLAGS))

    def active(self, now: datetime) -> bool:
        return self.start_time <= now < self.end_time


Minutes = Annotated[int, Field(ge=1, le=_MAX_MINUTES)]


class _Checked(BaseModel):
    """The checks a create and an update share: names, flags, moments in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("users", mode="before", check_fields=False)
    @classmethod
    def _users(cls, value: Any) -> tuple[str, ...]:
        return _names(value, "user")

    @field_validator("accounts", mode="before", check_fields=False)
    @classmethod
    def _accounts(cls, value: Any) -> tuple[str, ...]:
        return _names(value, "account")

    @field_validator("flags", mode="before", check_fields=False)
    @classmethod
    def _flag_values(cls, value: Any) -> tuple[str, ...]:
        return _flags(value)

    @field_validator("start", "end", check_fields=False)
    @classmethod
    def _moment(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class ReservationSpec(_Checked):
    """A reservation to create. ``start`` None is "now"; give ``end`` or ``duration_minutes``,
    ``nodes`` or ``node_count``, and ``users`` or ``accounts`` (or both)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    start: datetime | None = None
    end: datetime | None = None
    duration_minutes: Minutes | None = None
    nodes: str | None = None
    node_count: Annotated[int, Field(ge=1, le=100_000)] | None = None
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    partition: str | None = None
    flags: tuple[str, ...] = ()

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return check_name(str(value))

    @field_validator("nodes", "partition", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _whole(self) -> ReservationSpec:
        if (self.end is None) == (self.duration_minutes is None):
            raise ValueError("give an end time or a duration in minutes (one of them)")
        if (self.nodes is None) == (self.node_count is None):
            raise ValueError("give nodes (node[001-002]) or a node count (one of them)")
        if self.nodes is not None and not _NODES.fullmatch(self.nodes):
            raise ValueError("name nodes as Slurm does: node003, node[001-002]")
        if self.partition is not None and not _PARTITION.fullmatch(self.partition):
            raise ValueError(f"{self.partition!r} is not a partition name")
        if not self.users and not self.accounts:
            raise ValueError("give the users or accounts the reservation is for")
        if self.end is not None and self.end <= (self.start or datetime.now(UTC)):
            raise ValueError("the end must be after the start")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """When it would hold its nodes, as of ``now``."""
        start = self.start or _utc(now)
        if self.end is not None:
            return start, self.end
        assert self.duration_minutes is not None
        return start, datetime.fromtimestamp(start.timestamp() + 60 * self.duration_minutes, UTC)

    @classmethod
    def of(cls, resv: Reservation, *, start: datetime | None = None) -> ReservationSpec:
        """The spec that re-creates ``resv`` (its nodes by name, its managed flags)."""
        return cls(
            name=resv.name,
            start=resv.start_time if start is None else start,
            end=resv.end_time,
            nodes=resv.nodes,
            users=resv.users,
            accounts=resv.accounts,
            partition=resv.partition,
            flags=resv.managed_flags,
        )


def _listed(values: Sequence[str]) -> str:
    return ",".join(values)


def reservation_create(spec: ReservationSpec) -> AdminCommand:
    """``scontrol create reservation ...``: the only place its argv is built."""
    args = ["create", "reservation", f"ReservationName={spec.name}"]
    args.append(f"StartTime={slurm_time(spec.start)}" if spec.start else "StartTime=now")
    if spec.end is not None:
        args.append(f"EndTime={slurm_time(spec.end)}")
    else:
        args.append(f"Duration={spec.duration_minutes}")
    args.append(f"Nodes={spec.nodes}" if spec.nodes else f"NodeCnt={spec.node_count}")
    if spec.users:
        args.append(f"Users={_listed(spec.users)}")
    if spec.accounts:
        args.append(f"Accounts={_listed(spec.accounts)}")
    if spec.partition:
        args.append(f"PartitionName={spec.partition}")
    if spec.flags:
        args.append(f"Flags={_listed(spec.flags)}")
    return AdminCommand("scontrol", tuple(args))


class ReservationValues(_Checked):
    """What an update may set: the window, the nodes, who may use it, the flags."""

    start: datetime
    end: datetime
    nodes: str | None
    users: tuple[str, ...]
    accounts: tuple[str, ...]
    flags: tuple[str, ...]

    @classmethod
    def of(cls, resv: Reservation) -> ReservationValues:
        return cls(
            start=resv.start_time,
            end=resv.end_time,
            nodes=resv.nodes,
            users=resv.users,
            accounts=resv.accounts,
            flags=resv.managed_flags,
        )


def _list_change(key: str, before: tuple[str, ...], after: tuple[str, ...]) -> str:
    if after:
        return f"{key}={_listed(after)}"
    return f"{key}={','.join('-' + v for v in before)}"


def reservation_update(
    name: str, before: ReservationValues, after: ReservationValues
) -> AdminCommand | None:
    """``scontrol update ReservationName=N ...`` of what differs; None when nothing does."""
    args: list[str] = []
    if after.start != before.start:
        args.append(f"StartTime={slurm_time(after.start)}")
    if after.end != before.end:
        args.append(f"EndTime={slurm_time(after.end)}")
    if after.nodes != before.nodes:
        if not after.nodes or not _NODES.fullmatch(after.nodes):
            raise ValueError("name nodes as Slurm does: node003, node[001-002]")
        args.append(f"Nodes={after.nodes}")
    if after.users != before.users:
        args.append(_list_change("Users", before.users, after.users))
    if after.accounts != before.accounts:
        args.append(_list_change("Accounts", before.accounts, after.accounts))
    if after.flags != before.flags:
        added = [f for f in after.flags if f not in before.flags]
        removed = ["-" + f for f in before.flags if f not in after.flags]
        args.append(f"Flags={_listed([*added, *removed])}")
    if not args:
        return None
    if not after.users and not after.accounts:
        raise ValueError("a reservation keeps at least one user or account")
    if after.end <= after.start:
        raise ValueError("the end must be after the start")
    return AdminCommand("scontrol", ("update", f"ReservationName={check_name(name)}", *args))


def reservation_delete(name: str) -> AdminCommand:
    """``scontrol delete ReservationName=N``."""
    return AdminCommand("scontrol", ("delete", f"ReservationName={check_name(name)}"))


# --- reading ----------------------------------------------------------------------------


class _WireReservation(msgspec.Struct, frozen=True):
    """One reservation of ``scontrol --json show reservation`` (v0.0.40 to v0.0.45):
    every field read is required with one type."""

    name: str
    node_list: str
    node_count: int
    start_time: wire.NoVal
    end_time: wire.NoVal
    flags: list[str]
    users: str
    accounts: str
    partition: str


class _WireReservations(msgspec.Struct, frozen=True):
    reservations: list[_WireReservation]
    meta: wire.Meta


_json_decoder = msgspec.json.Decoder(_WireReservations)
#: Formats whose reservations ``_WireReservation`` reads.
JSON_FORMATS = frozenset({"v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"})


def _moment(value: wire.NoVal, what: str) -> datetime:
    if not value.set or value.infinite:
        raise ValueError(f"{what} is not a moment")
    return datetime.fromtimestamp(value.number, UTC)


def _split(value: str | None) -> tuple[str, ...]:
    if value is None or value in ("", "(null)"):
        return ()
    return tuple(sorted(v for v in value.split(",") if v))


def parse_reservations_json(raw: bytes, data_format: str) -> list[Reservation]:
    """``scontrol --json=vX show reservation`` -> reservations (strict; the meta must
    name ``data_format``)."""
    try:
        doc = _json_decoder.decode(raw)
        said = formats.format_of_meta(doc.meta)
        if said != data_format:
            raise ValueError(f"asked for JSON format {data_format}, got {said}")
        return [
            Reservation(
                name=r.name,
                start_time=_moment(r.start_time, "start_time"),
                end_time=_moment(r.end_time, "end_time"),
                nodes=r.node_list or None,
                node_names=hostlist.expand(r.node_list or None),
                node_count=r.node_count,
                partition=r.partition or None,
                users=_split(r.users),
                accounts=_split(r.accounts),
                flags=tuple(r.flags),
            )
            for r in doc.reservations
        ]
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise SlurmOutputUnreadable(
            f"scontrol show reservation ({data_format}) printed JSON the portal cannot read: {exc}"
        ) from exc


_TEXT_KEYS = ("ReservationName", "StartTime", "EndTime", "Nodes", "NodeCnt", "Flags")


def _text_time(value: str) -> datetime:
    return datetime.strptime(value, _TIME).replace(tzinfo=UTC)


def parse_reservations_text(raw: bytes) -> list[Reservation]:
    """``scontrol -o show reservation`` (TZ=UTC) -> reservations, fields by name."""
    text = raw.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines == [_NO_RESERVATIONS]:
        return []
    out = []
    for line in lines:
        f = parse_oneliner(line)
        try:
            missing = [k for k in (*_TEXT_KEYS, "Users", "Accounts", "PartitionName") if k not in f]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            nodes = f["Nodes"] if f["Nodes"] not in ("", "(null)") else None
            out.append(
                Reservation(
                    name=f["ReservationName"],
                    start_time=_text_time(f["StartTime"]),
                    end_time=_text_time(f["EndTime"]),
                    nodes=nodes,
                    node_names=hostlist.expand(nodes),
                    node_count=int(f["NodeCnt"]),
                    partition=None if f["PartitionName"] in ("", "(null)") else f["PartitionName"],
                    users=_split(f["Users"]),
                    accounts=_split(f["Accounts"]),
                    flags=_split_flags(f["Flags"]),
                )
            )
        except ValueError as exc:
            shown = line.strip()[:200]
            raise SlurmOutputUnreadable(
                f"scontrol -o show reservation printed a line the portal cannot read ({exc}): "
                f"{shown!r}"
            ) from exc
    return out


def _split_flags(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v and v != "(null)")


def show_args(cluster: SlurmCluster) -> list[str]:
    """The ``scontrol`` arguments that list reservations on ``cluster`` (detected)."""
    if cluster.data_format in JSON_FORMATS:
        return [cluster.json_flag, "show", "reservation"]
    return ["-o", "show", "reservation"]


def parse_reservations(raw: bytes, cluster: SlurmCluster) -> list[Reservation]:
    if cluster.data_format in JSON_FORMATS:
        return parse_reservations_json(raw, cluster.data_format or "")
    return parse_reservations_text(raw)


def read_reservations(executor: SlurmExecutor, cluster: SlurmCluster) -> list[Reservation]:
    """Every reservation slurmctld has now, by start time (never cached: plans and
    reverts need the truth). ``cluster`` is detected (``SlurmAdapter.cluster()``)."""
    done = executor.run("scontrol", show_args(cluster))
    found = parse_reservations(done.stdout, cluster)
    return sorted(found, key=lambda r: (r.start_time, r.name))
