"""Reservations in the admin console: the calendar, and create/update/delete planned
before they run.

A plan reads the reservations from slurmctld (``admin_reservations.read_reservations``,
never a cache), builds the one ``scontrol`` command of the change
(``slurm/admin_reservations.py``, the only place its argv is made), and runs the
conflict check against the snapshot's jobs: a job conflicts when it is on (or may run
on) the reservation's nodes during its window, and the plan says which and why:

- a running job on one of its nodes whose end (start + time limit; none: never) is
  after the reservation starts;
- a pending job whose partition holds one of its nodes and that Slurm expects to
  start before the reservation ends (or has no expected start yet).

A node count (``NodeCnt``) lets Slurm pick the nodes: the check then counts every node
of the partition (or the cluster) and says so. The revert is built at plan time from
what was read: a create is undone by the delete, an update by the update back to the
values read, a delete by the create with those values (from now, if it had started).
``plan.apply`` runs it as the administrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.limits import Moment
from hpcportal.services.admin.plan import AffectedJob, Plan
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import admin_reservations, hostlist
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_reservations import (
    Reservation,
    ReservationSpec,
    ReservationValues,
)
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

_ON_NODE = frozenset({JobStatus.RUNNING, JobStatus.SUSPENDED, JobStatus.COMPLETING})
_QUEUED = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD})


class ReservationValuesIn(BaseModel):
    """The values of a create, or what an update changes (a field left out keeps its
    value). ``start`` null on create is "now"; ``duration_minutes`` on update counts
    from the (new) start."""

    model_config = ConfigDict(extra="forbid")

    start: Moment | None = None
    end: Moment | None = None
    duration_minutes: int | None = None
    nodes: str | None = None
    node_count: int | None = None
    users: list[str] | str | None = None
    accounts: list[str] | str | None = None
    partition: str | None = None
    flags: list[str] | str | None = None

    @field_validator("start", "end")
    @classmethod
    def _within(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.year > admin_reservations.LAST_YEAR:
            raise ValueError(f"give a time before the year {admin_reservations.LAST_YEAR + 1}")
        return value


class ReservationRequest(BaseModel):
    """One reservation change as the API, CLI and page send it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "delete"]
    name: str
    values: ReservationValuesIn = ReservationValuesIn()


def _said(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}".replace(
                "Value error, ", ""
            )
            for e in exc.errors()
        )
    return str(exc)


def _name(name: str) -> str:
    try:
        return admin_reservations.check_name(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def read_all(adapter: SlurmAdapter) -> list[Reservation]:
    """Every reservation slurmctld has now (blocking: one ``scontrol show``)."""
    return admin_reservations.read_reservations(adapter.executor, adapter.cluster())


def _find(adapter: SlurmAdapter, name: str) -> Reservation | None:
    return next((r for r in read_all(adapter) if r.name == name), None)


# --- the conflict check -----------------------------------------------------------------


def _job_end(job: Job) -> datetime | None:
    if job.end_time is not None and job.status in _ON_NODE:
        return job.end_time
    if job.start_time is not None and job.time_limit_minutes is not None:
        return job.start_time + timedelta(minutes=job.time_limit_minutes)
    return None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "no end (no time limit)"


def conflicts(
    snap: ClusterSnapshot,
    nodes: Sequence[str],
    start: datetime,
    end: datetime,
) -> tuple[AffectedJob, ...]:
    """The running and pending jobs a reservation of ``nodes`` over [start, end) hits,
    each with why."""
    names = set(nodes)
    partitions = {p.name for p in snap.partitions if names.intersection(p.node_names)}
    hit: list[AffectedJob] = []
    for job in snap.jobs:
        why = None
        if job.status in _ON_NODE and names.intersection(job.node_names):
            job_end = _job_end(job)
            if job_end is None or job_end > start:
                on = ",".join(sorted(names.intersection(job.node_names)))
                why = f"running on {on} until {_when(job_end)}, after the reservation starts"
        elif job.status in _QUEUED and job.partition in partitions:
            expected = job.start_time
            if expected is None or expected < end:
                when = f"expected to start {_when(expected)}" if expected else "no start yet"
                why = (
                    f"pending in {job.partition}, which holds these nodes ({when}); "
                    "it cannot start on them during the reservation"
                )
        if why is not None:
            hit.append(AffectedJob(job.id, job.user, job.name, job.state, job.nodes, why))
    return tuple(hit)


def _candidate_nodes(snap: ClusterSnapshot, spec: ReservationSpec) -> tuple[list[str], str]:
    if spec.nodes is not None:
        return hostlist.expand(spec.nodes), ""
    if spec.partition is not None:
        part = next((p for p in snap.partitions if p.name == spec.partition), None)
        if part is None:
            raise NotFound(f"No partition {spec.partition}.")
        return list(part.node_names), f"every node of partition {spec.partition}"
    return [n.name for n in snap.nodes], "every node"


def _check_nodes(snap: ClusterSnapshot, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in snap.nodes_by_name]
    if unknown:
        raise NotFound(f"No such node: {', '.join(unknown[:5])}.")


def _conflict_notes(hit: Sequence[AffectedJob], flags: Sequence[str], scope: str) -> list[str]:
    running = [j for j in hit if j.conflict and j.conflict.startswith("running")]
    notes = [
        f"Conflicts: {len(running)} running and {len(hit) - len(running)} pending job(s) "
        "overlap the reservation's nodes and window."
    ]
    if scope:
        notes.append(f"Slurm picks the nodes; the check counts {scope}.")
    if running and "IGNORE_JOBS" not in flags:
        notes.append(
            "Slurm refuses a reservation over nodes busy in its window unless it has "
            "IGNORE_JOBS; running jobs are never stopped by a reservation."
        )
    if "MAINT" in flags:
        notes.append("MAINT: the nodes are in maintenance for the window (accounted as down).")
    return notes


# --- plans ------------------------------------------------------------------------------


def _spec(name: str, values: ReservationValuesIn) -> ReservationSpec:
    given = {k: getattr(values, k) for k in values.model_fields_set}
    try:
        return ReservationSpec(name=name, **given)
    except ValueError as exc:
        raise InvalidInput(_said(exc)) from exc


def plan_create(adapter: SlurmAdapter, snap: ClusterSnapshot, spec: ReservationSpec) -> Plan:
    """``scontrol create reservation``; reverted by deleting it."""
    if _find(adapter, spec.name) is not None:
        raise Conflict(f"Reservation {spec.name} already exists; update it instead.")
    nodes, scope = _candidate_nodes(snap, spec)
    _check_nodes(snap, nodes)
    start, end = spec.window(datetime.now(UTC))
    hit = conflicts(snap, nodes, start, end)
    return Plan(
        kind="reservation.create",
        target=f"reservation:{spec.name}",
        summary=f"Create reservation {spec.name} ({_span(start, end)})",
        commands=(admin_reservations.reservation_create(spec),),
        affects=hit,
        previous={"exists": False, "after": spec.model_dump(mode="json")},
        revert=(admin_reservations.reservation_delete(spec.name),),
        notes=tuple(_conflict_notes(hit, spec.flags, scope)),
    )


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def _updated(before: Reservation, values: ReservationValuesIn) -> ReservationValues:
    """``before`` with the fields given set: a moved start keeps the length unless an
    end or a duration is given too (a duration counts from the start)."""
    given = values.model_fields_set
    if given & {"node_count", "partition"}:
        raise InvalidInput(
            "An update changes the start, end or duration, nodes, users, accounts or flags."
        )
    if {"end", "duration_minutes"} <= given:
        raise InvalidInput("Give an end time or a duration, not both.")
    start = values.start if "start" in given else before.start_time
    if start is None:
        raise InvalidInput("start: give a time.")
    if "end" in given:
        if values.end is None:
            raise InvalidInput("end: give a time.")
        end = values.end
    elif "duration_minutes" in given:
        minutes = values.duration_minutes
        if minutes is None or not 1 <= minutes <= 366 * 24 * 60:
            raise InvalidInput("duration_minutes: give 1 to 527040 minutes.")
        end = start + timedelta(minutes=minutes)
    else:
        end = start + (before.end_time - before.start_time)
    current = ReservationValues.of(before)
    return ReservationValues(
        start=start,
        end=end,
        nodes=values.nodes if "nodes" in given else current.nodes,
        users=values.users if "users" in given else current.users,
        accounts=values.accounts if "accounts" in given else current.accounts,
        flags=values.flags if "flags" in given else current.flags,
    )


def plan_update(
    adapter: SlurmAdapter, snap: ClusterSnapshot, name: str, values: ReservationValuesIn
) -> Plan:
    """``scontrol update ReservationName=N ...``; reverted by the update back."""
    before = _find(adapter, name)
    if before is None:
        raise NotFound(f"There is no reservation {name}.")
    try:
        after = _updated(before, values)
        old = ReservationValues.of(before)
        command = admin_reservations.reservation_update(name, old, after)
        undo = admin_reservations.reservation_update(name, after, old)
    except ValueError as exc:
        raise InvalidInput(_said(exc)) from exc
    if command is None or undo is None:
        raise InvalidInput(f"Reservation {name} already has these values; nothing to change.")
    nodes = hostlist.expand(after.nodes) if after.nodes else before.node_names
    _check_nodes(snap, nodes)
    hit = conflicts(snap, nodes, after.start, after.end)
    return Plan(
        kind="reservation.update",
        target=f"reservation:{name}",
        summary=f"Change reservation {name} ({_span(after.start, after.end)})",
        commands=(command,),
        affects=hit,
        previous={
            "reservation": before.model_dump(mode="json"),
            "after": after.model_dump(mode="json"),
        },
        revert=(undo,),
        notes=tuple([*_diff(old, after), *_conflict_notes(hit, after.flags, "")]),
    )


def _diff(before: ReservationValues, after: ReservationValues) -> list[str]:
    def shown(value: Any) -> str:
        if isinstance(value, datetime):
            return f"{value:%Y-%m-%d %H:%M} UTC"
        if isinstance(value, tuple):
            return ",".join(value) or "none"
        return str(value) if value else "none"

    return [
        f"{key}: {shown(getattr(before, key))} -> {shown(getattr(after, key))}"
        for key in ReservationValues.model_fields
        if getattr(before, key) != getattr(after, key)
    ]


def plan_delete(adapter: SlurmAdapter, snap: ClusterSnapshot, name: str) -> Plan:
    """``scontrol delete``; reverted by creating it again with the values read (from
    now, if it has started)."""
    before = _find(adapter, name)
    if before is None:
        raise NotFound(f"There is no reservation {name}.")
    now = datetime.now(UTC)
    started = before.start_time <= now
    spec = ReservationSpec.of(before).model_copy(update={"start": None} if started else {})
    notes = ["Jobs waiting for this reservation stay pending; a revert creates it again."]
    if started:
        notes.append("It has started: a revert creates it from the moment it runs.")
    return Plan(
        kind="reservation.delete",
        target=f"reservation:{name}",
        summary=f"Delete reservation {name}",
        commands=(admin_reservations.reservation_delete(name),),
        previous={"reservation": before.model_dump(mode="json")},
        revert=(admin_reservations.reservation_create(spec),),
        notes=tuple(notes),
    )


def plan_request(adapter: SlurmAdapter, snap: ClusterSnapshot, request: ReservationRequest) -> Plan:
    """The plan of ``request`` (blocking: reads the reservations from slurmctld)."""
    name = _name(request.name)
    if request.action == "delete":
        if request.values.model_fields_set:
            raise InvalidInput("A delete takes no values.")
        return plan_delete(adapter, snap, name)
    if request.action == "update":
        if not request.values.model_fields_set:
            raise InvalidInput("Give a value to change.")
        return plan_update(adapter, snap, name, request.values)
    return plan_create(adapter, snap, _spec(name, request.values))


# --- the calendar -----------------------------------------------------------------------


class CalendarCell(BaseModel):
    """One node on one day: the reservations holding it then."""

    names: list[str]
    maintenance: bool


class CalendarRow(BaseModel):
    node: str
    cells: list[CalendarCell]


class ReservationRow(BaseModel):
    reservation: Reservation
    maintenance: bool
    active: bool
    jobs: int


class Calendar(BaseModel):
    """Reservations as bars per node over ``days`` days from ``start`` (UTC midnight)."""

    start: datetime
    days: list[datetime]
    rows: list[CalendarRow]
    reservations: list[ReservationRow]


def calendar(
    snap: ClusterSnapshot,
    reservations: Sequence[Reservation],
    *,
    start: datetime | None = None,
    days: int = 7,
) -> Calendar:
    """The week grid: one row per node, one cell per day."""
    now = datetime.now(UTC)
    if start is not None and start.year > admin_reservations.LAST_YEAR:
        raise InvalidInput(f"start: give a day before the year {admin_reservations.LAST_YEAR + 1}.")
    first = (start or now).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_starts = [first + timedelta(days=i) for i in range(days)]
    rows = []
    for node in snap.nodes:
        cells = []
        for day in day_starts:
            held = [
                r
                for r in reservations
                if node.name in r.node_names
                and r.start_time < day + timedelta(days=1)
                and r.end_time > day
            ]
            cells.append(
                CalendarCell(
                    names=[r.name for r in held], maintenance=any(r.maintenance for r in held)
                )
            )
        rows.append(CalendarRow(node=node.name, cells=cells))
    listed = [
        ReservationRow(
            reservation=r,
            maintenance=r.maintenance,
            active=r.active(now),
            jobs=len(conflicts(snap, r.node_names, max(r.start_time, now), r.end_time)),
        )
        for r in reservations
    ]
    return Calendar(start=first, days=day_starts, rows=rows, reservations=listed)
