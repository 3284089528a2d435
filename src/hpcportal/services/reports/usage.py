"""Questions to the usage store: sums by dimension over a period, for whom may see them.

Every report kind that shows job usage asks here, and this module asks only the
rollup tables the ingester fills (``ingest.py``), never slurmdbd: a year of figures is
a few thousand rows of ``usage_daily``. ``query`` takes a ``UsageQuery`` (period,
dimensions, measures, filters, time granularity and zone) and a ``Scope`` resolved
from the viewer (``resolve_scope``) and returns typed rows.

Which table: ``usage_daily`` when the period starts and ends on UTC midnights and no
hourly or non-UTC time grouping is asked; otherwise ``usage_hourly`` (a week in
Asia/Seoul starts at 15:00 UTC). Rollups hold whole hours, so a period that does not
start or end on one is widened to whole hours, and ``UsageResult.window`` says so.

Who sees what (``resolve_scope``): a portal admin or Slurm operator everything; a
Slurm account coordinator the jobs of the accounts they coordinate, and their own; anyone
else their own jobs. Naming in the scope or the filters an account or a user the viewer
may not see is refused (403, saying what they may see), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from hpcportal.db.report_tables import USAGE_SUMS, UsageDaily, UsageHourly, UsageIngestCursor
from hpcportal.errors import Forbidden, InvalidInput
from hpcportal.services.reports.buckets import bucket_order
from hpcportal.services.reports.document import Period
from hpcportal.services.reports.spec import (
    Dimension,
    FilterDimension,
    Granularity,
    Measure,
    ReportScope,
    ReportSpec,
    Viewer,
)

#: Rows one query may return: a year by hour and by user is too many for a report.
MAX_ROWS = 200_000
_HOUR = timedelta(hours=1)
#: Every measure, in the order tables show them: spec.Measure's own order, so a new
#: measure is named in one place.
MEASURES: tuple[Measure, ...] = get_args(Measure)
#: Measures that are counts (integers); PERCENTS are fractions (0.5 is 50 %); the
#: others are numbers (hours, minutes).
COUNTS = frozenset({"jobs", "started", "completed", "failed", "timed_out", "cancelled", "other"})
PERCENTS = frozenset({"cpu_efficiency", "wall_accuracy"})


class UsageQuery(BaseModel):
    """What to sum: over ``period``, grouped by ``dimensions`` (``time`` by
    ``granularity`` in ``time_zone``), only rows matching every filter."""

    period: Period
    dimensions: list[Dimension] = Field(default_factory=list)
    measures: list[Measure] = Field(default_factory=lambda: list(MEASURES))
    filters: dict[FilterDimension, list[str]] = Field(default_factory=dict)
    granularity: Granularity = "day"
    time_zone: str = "UTC"

    @classmethod
    def of(cls, spec: ReportSpec, period: Period | None = None) -> UsageQuery:
        """The query of a spec's dimensions, measures and filters (over ``period``)."""
        return cls(
            period=period or spec.period,
            dimensions=list(spec.dimensions),
            measures=list(spec.measures) or list(MEASURES),
            filters=dict(spec.filters),
            granularity=spec.granularity,
            time_zone=spec.time_zone,
        )


@dataclass(frozen=True)
class Scope:
    """Whose rows a viewer's query covers, resolved: ``everyone`` or the union of the
    rows of ``own`` (the viewer's jobs) and of ``accounts``; then narrowed to
    ``only_users``/``only_accounts`` when the request named some."""

    everyone: bool
    own: str | None
    accounts: frozenset[str]
    only_users: frozenset[str] = frozenset()
    only_accounts: frozenset[str] = frozenset()

    def describe(self) -> str:
        """``all``, ``account physics``, ``user alice`` (English; kinds translate)."""
        parts: list[str] = []
        if self.only_accounts:
            parts.append("account " + ", ".join(sorted(self.only_accounts)))
        if self.only_users:
            parts.append("user " + ", ".join(sorted(self.only_users)))
        if parts:
            return "; ".join(parts)
        if self.everyone:
            return "all"
        if self.accounts:
            own = f" and user {self.own}" if self.own else ""
            return "account " + ", ".join(sorted(self.accounts)) + own
        return f"user {self.own}"


def resolve_scope(
    viewer: Viewer, scope: ReportScope, filters: dict[FilterDimension, list[str]] | None = None
) -> Scope:
    """What ``viewer`` may see of what they asked (``scope`` and the user/account
    ``filters``); 403 naming what they may see if they asked for more."""
    filters = filters or {}
    named_accounts = set(scope.accounts) | set(filters.get("account", []))
    named_users = set(scope.users) | set(filters.get("user", []))
    if viewer.is_admin:
        return Scope(True, None, frozenset(), frozenset(scope.users), frozenset(scope.accounts))
    foreign = sorted(named_accounts - viewer.coordinates)
    if foreign:
        may = ", ".join(sorted(viewer.coordinates)) or "none"
        raise Forbidden(
            f"{viewer.username} may not see the usage of account(s) {', '.join(foreign)}: "
            f"only administrators and the account's Slurm coordinators may "
            f"(accounts {viewer.username} coordinates: {may})."
        )
    if not viewer.coordinates and named_users - {viewer.username}:
        others = ", ".join(sorted(named_users - {viewer.username}))
        raise Forbidden(
            f"{viewer.username} may see the usage of their own jobs only, not of {others}."
        )
    return Scope(
        False,
        viewer.username,
        viewer.coordinates,
        frozenset(scope.users),
        frozenset(scope.accounts),
    )


class UsageRow(BaseModel):
    """One group: its dimension values (``time`` as its label) and its measures."""

    keys: dict[str, str]
    values: dict[str, float | int | None]
    #: The start of the time bucket (UTC), when grouped by time.
    time_start: datetime | None = None


class UsageResult(BaseModel):
    """The answer: rows, the totals of every measure over all rows, what it came from."""

    query: UsageQuery
    rows: list[UsageRow]
    totals: dict[str, float | int | None]
    #: The window the rollups answered (the period widened to whole hours).
    window: Period
    table: str
    #: Up to when the store holds every ended job (None: nothing ingested yet).
    complete_until: datetime | None
    slurm_release: str | None


def measures_of(sums: dict[str, float], wanted: Iterable[str]) -> dict[str, float | int | None]:
    """The measures of one group's summed rollup columns."""
    started = sums["started"]

    def ratio(a: float, b: float, scale: float = 1.0) -> float | None:
        return a / b * scale if b else None

    every: dict[str, float | int | None] = {
        "jobs": int(sums["jobs"]),
        "started": int(started),
        "cpu_hours": sums["cpu_seconds"] / 3600,
        "gpu_hours": sums["gpu_seconds"] / 3600,
        "memory_gb_hours": sums["memory_mb_seconds"] / 1024 / 3600,
        "wall_hours": sums["wall_seconds"] / 3600,
        "wait_hours": sums["wait_seconds"] / 3600,
        "requested_hours": sums["requested_seconds"] / 3600,
        "cpu_time_hours": sums["cpu_time_seconds"] / 3600,
        "mean_wait_minutes": ratio(sums["wait_seconds"], started, 1 / 60),
        "mean_wall_minutes": ratio(sums["wall_seconds"], started, 1 / 60),
        "cpu_efficiency": ratio(sums["cpu_time_seconds"], sums["cpu_seconds"]),
        "wall_accuracy": ratio(sums["wall_seconds"], sums["requested_seconds"]),
        "completed": int(sums["completed"]),
        "failed": int(sums["failed"]),
        "timed_out": int(sums["timed_out"]),
        "cancelled": int(sums["cancelled"]),
        "other": int(sums["other"]),
    }
    return {m: every[m] for m in wanted}


def whole_hours(period: Period) -> Period:
    """``period`` widened to whole UTC hours (what the rollups can answer)."""
    start = period.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = period.end.astimezone(UTC)
    floor = end.replace(minute=0, second=0, microsecond=0)
    return Period(start=start, end=floor if floor == end else floor + _HOUR)


def _midnight(moment: datetime) -> bool:
    return moment.astimezone(UTC).time() == datetime.min.time()


def time_bucket(moment: datetime, granularity: Granularity, zone: ZoneInfo) -> tuple[datetime, str]:
    """The start (UTC) and label of the ``granularity`` bucket holding ``moment``."""
    local = moment.astimezone(zone)
    if granularity == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m-%d %H:00")
    elif granularity == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m-%d")
    elif granularity == "week":
        day = local.date() - timedelta(days=local.weekday())
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        iso = day.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    else:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m")
    return start.astimezone(UTC), label


def _conditions(
    model: Any, scope: Scope, filters: dict[FilterDimension, list[str]]
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if not scope.everyone:
        mine = model.user == scope.own
        where.append(
            or_(mine, model.account.in_(sorted(scope.accounts))) if scope.accounts else mine
        )
    if scope.only_users:
        where.append(model.user.in_(sorted(scope.only_users)))
    if scope.only_accounts:
        where.append(model.account.in_(sorted(scope.only_accounts)))
    for dimension, values in filters.items():
        where.append(getattr(model, dimension).in_(sorted(set(values))))
    return where


def _key_order(dimension: str, value: str) -> tuple[int, str]:
    return (bucket_order(value), value) if dimension == "size_bucket" else (0, value)


def query(session: Session, q: UsageQuery, scope: Scope) -> UsageResult:
    """Sum the rollups for ``q`` within ``scope`` (blocking)."""
    window = whole_hours(q.period)
    zone = ZoneInfo(q.time_zone)
    by_time = "time" in q.dimensions
    daily = (
        _midnight(window.start)
        and _midnight(window.end)
        and (not by_time or (q.time_zone == "UTC" and q.granularity != "hour"))
    )
    model: Any = UsageDaily if daily else UsageHourly
    plain = [d for d in q.dimensions if d != "time"]
    group_cols = [getattr(model, d) for d in plain] + ([model.period_start] if by_time else [])
    sums = [func.sum(getattr(model, c)) for c in USAGE_SUMS]
    where = and_(
        model.period_start >= window.start,
        model.period_start < window.end,
        *_conditions(model, scope, q.filters),
    )
    statement = select(*group_cols, *sums).where(where)
    if group_cols:
        statement = statement.group_by(*group_cols)
    raw = session.execute(statement.limit(MAX_ROWS + 1)).all()
    if len(raw) > MAX_ROWS:
        raise InvalidInput(
            f"This report would have more than {MAX_ROWS:,} rows: choose fewer dimensions, "
            "a coarser time granularity or a shorter period."
        )
    groups: dict[tuple[str, ...], tuple[datetime | None, dict[str, float]]] = {}
    total = dict.fromkeys(USAGE_SUMS, 0.0)
    n = len(plain)
    for record in raw:
        keys = [str(v) for v in record[:n]]
        started: datetime | None = None
        if by_time:
            started, label = time_bucket(record[n], q.granularity, zone)
            keys.append(label)
        values = [float(v or 0) for v in record[n + (1 if by_time else 0) :]]
        if not group_cols and values[USAGE_SUMS.index("jobs")] == 0:
            continue  # SUM over no rows: no group at all
        _, acc = groups.setdefault(tuple(keys), (started, dict.fromkeys(USAGE_SUMS, 0.0)))
        for column, value in zip(USAGE_SUMS, values, strict=True):
            acc[column] += value
            total[column] += value
    names = [*plain, *(["time"] if by_time else [])]
    rows = [
        UsageRow(
            keys=dict(zip(names, key, strict=True)),
            values=measures_of(acc, q.measures),
            time_start=started,
        )
        for key, (started, acc) in groups.items()
    ]
    rows.sort(key=lambda r: (r.time_start or window.start,
                             [_key_order(d, r.keys[d]) for d in plain]))  # fmt: skip
    cursor = session.scalars(
        select(UsageIngestCursor).order_by(UsageIngestCursor.ingested_until)
    ).first()
    return UsageResult(
        query=q,
        rows=rows,
        totals=measures_of(total, q.measures),
        window=window,
        table=model.__tablename__,
        complete_until=cursor.ingested_until if cursor else None,
        slurm_release=cursor.slurm_release if cursor else None,
    )


def query_for(
    session: Session, q: UsageQuery, viewer: Viewer, scope: ReportScope | None = None
) -> UsageResult:
    """``query`` within what ``viewer`` may see of ``scope`` (403 beyond it)."""
    return query(session, q, resolve_scope(viewer, scope or ReportScope(), q.filters))


def by_key(rows: Sequence[UsageRow]) -> dict[tuple[str, ...], UsageRow]:
    """Rows by their dimension values (to pair a period's rows with the previous')."""
    return {tuple(r.keys.values()): r for r in rows}
