"""Report schedules: stored by their owners, run once per period by the leader.

Every ``report_schedule_check_seconds`` the leader (``ha.Leadership``) looks for
enabled schedules whose ``next_run_at`` has come. For each, in one fenced transaction:
the period the scheduled instant covers (``periods.period_of_run``), a
``report_schedule_runs`` row for (schedule, period key) inserted *if absent*, and only
when this transaction inserted it the period's reports queued (one per format), then
``next_run_at`` moved on. A leader that lost its lease cannot commit (the fence), and
a new leader that looks at the same period finds the run row and queues nothing: one
report per period across leader changes. The same tick deletes expired reports.

A leader down for longer than a period runs the period that was due when it comes
back and moves on from now; periods missed in between are not made up (ask for them
on demand).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.report_tables import ReportSchedule, ReportScheduleRun
from hpcportal.db.session import Database
from hpcportal.db.upsert import insert_if_absent
from hpcportal.errors import NotFound
from hpcportal.ha.lease import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.identity import Principal
from hpcportal.services.reports import generation, periods
from hpcportal.services.reports.document import Language, ReportFormat
from hpcportal.services.reports.periods import Frequency, SchedulePeriod

log = logging.getLogger(__name__)


class Leader(Protocol):
    def is_leader(self) -> bool: ...
    def fence(self, session: Session) -> None: ...
    def current_token(self) -> int | None: ...


#: Puts a run's period, and the calendar period before it, into a stored spec.
WithPeriod = Callable[[dict[str, Any], SchedulePeriod, SchedulePeriod], dict[str, Any]]


class ScheduleIn(BaseModel):
    """A new schedule: the spec (its period is replaced by each run's), the formats,
    how often, and when in which time zone."""

    name: str = Field(min_length=1, max_length=200)
    spec: dict[str, Any]
    formats: list[ReportFormat] = Field(min_length=1, max_length=4)
    language: Language = "en"
    frequency: Frequency
    time_of_day: str = Field(default="06:00", description="HH:MM, 24 hours, local time")
    time_zone: str = Field(default="UTC", description="IANA name, e.g. Asia/Seoul")
    enabled: bool = True

    @field_validator("time_of_day")
    @classmethod
    def _time(cls, value: str) -> str:
        periods.parse_time_of_day(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        periods.zone(value)
        return value


class ScheduleOut(BaseModel):
    id: int
    owner: str
    name: str
    spec: dict[str, Any]
    formats: list[str]
    language: str
    frequency: str
    time_of_day: str
    time_zone: str
    next_run_at: datetime
    last_period_key: str | None
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, row: ReportSchedule) -> ScheduleOut:
        return cls(
            id=row.id, owner=row.owner, name=row.name, spec=dict(row.spec),
            formats=list(row.formats), language=row.language, frequency=row.frequency,
            time_of_day=row.time_of_day, time_zone=row.time_zone,
            next_run_at=row.next_run_at, last_period_key=row.last_period_key,
            enabled=row.enabled, created_at=row.created_at,
        )  # fmt: skip


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


def create(
    database: Database, who: Principal, body: ScheduleIn, spec: dict[str, Any], now: datetime
) -> ScheduleOut:
    """Store a schedule whose ``spec`` was checked for ``who`` (blocking)."""
    row = ReportSchedule(
        owner=who.username, name=body.name, spec=spec, formats=list(dict.fromkeys(body.formats)),
        language=body.language, frequency=body.frequency, time_of_day=body.time_of_day,
        time_zone=body.time_zone, enabled=body.enabled, created_at=now,
        next_run_at=periods.next_run(body.frequency, body.time_of_day, body.time_zone, now),
    )  # fmt: skip
    with database.session() as session:
        session.add(row)
        session.flush()
        return ScheduleOut.of(row)


def _visible(session: Session, who: Principal, schedule_id: int) -> ReportSchedule:
    row = session.get(ReportSchedule, schedule_id)
    if row is None or not who.owns_or_admin(row.owner):
        raise NotFound(f"No report schedule {schedule_id}.")
    return row


def get(database: Database, who: Principal, schedule_id: int) -> ScheduleOut:
    with database.session() as session:
        return ScheduleOut.of(_visible(session, who, schedule_id))


def listing(database: Database, who: Principal, *, everyone: bool = False) -> ScheduleList:
    with database.session() as session:
        query = select(ReportSchedule).order_by(ReportSchedule.id)
        if not (everyone and who.is_admin):
            query = query.where(ReportSchedule.owner == who.username)
        return ScheduleList(items=[ScheduleOut.of(r) for r in session.scalars(query)])


def remove(database: Database, who: Principal, schedule_id: int) -> None:
    """Delete a schedule; its reports stay until they expire (blocking)."""
    with database.session() as session:
        session.delete(_visible(session, who, schedule_id))


def due(database: Database, now: datetime) -> list[int]:
    with database.session() as session:
        return list(session.scalars(
            select(ReportSchedule.id).where(ReportSchedule.enabled.is_(True),
                                            ReportSchedule.next_run_at <= now)
            .order_by(ReportSchedule.next_run_at, ReportSchedule.id)
        ))  # fmt: skip


def run_one(
    database: Database, leader: Leader, settings: Settings, with_period: WithPeriod,
    schedule_id: int, now: datetime,
) -> list[int]:  # fmt: skip
    """Run one due schedule once for its period, fenced (blocking): the ids of the
    reports queued, empty when the period had run already or it is not due."""
    with database.session() as session:
        leader.fence(session)
        row = session.get(ReportSchedule, schedule_id)
        if row is None or not row.enabled or row.next_run_at > now:
            return []
        frequency: Frequency = row.frequency  # type: ignore[assignment]
        period = periods.period_of_run(frequency, row.time_zone, row.next_run_at)
        run = {"schedule_id": row.id, "period_key": period.key,
               "fencing_token": leader.current_token() or 0, "created_at": now}  # fmt: skip
        stmt = insert_if_absent(session, ReportScheduleRun, run, ["schedule_id", "period_key"])
        inserted = list(session.scalars(stmt.returning(ReportScheduleRun.id)))
        ids: list[int] = []
        if inserted:
            previous = periods.period_of_run(frequency, row.time_zone, period.start)
            spec = with_period(dict(row.spec), period, previous)
            kind = str(spec.get("kind", "job_usage"))
            reports = generation.new_rows(
                row.owner, spec, kind, row.formats, row.language, settings, now,
                title=row.name, schedule_id=row.id, period_key=period.key,
            )  # fmt: skip
            session.add_all(reports)
            session.flush()
            ids = [r.id for r in reports]
        row.last_period_key = period.key
        row.next_run_at = periods.next_run(
            frequency, row.time_of_day, row.time_zone, max(now, row.next_run_at)
        )
        return ids


class ReportScheduler(PeriodicPart):
    """The leader's part: run due schedules and delete expired reports."""

    loop_name = "report-scheduler"
    failed = "report schedules failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        leader: Leader,
        with_period: WithPeriod,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.database, self.leader = settings, database, leader
        self.with_period, self.clock = with_period, clock

    def interval(self) -> float:
        return self.settings.report_schedule_check_seconds

    async def tick(self) -> list[int]:
        """One round if leading: the ids of the reports queued."""
        if not self.leader.is_leader():
            return []
        return await run_in_threadpool(self.run, self.clock())

    def run(self, now: datetime) -> list[int]:
        queued: list[int] = []
        try:
            for schedule_id in due(self.database, now):
                queued += run_one(self.database, self.leader, self.settings,
                                  self.with_period, schedule_id, now)  # fmt: skip
            expired = generation.expire(self.database, self.leader.fence, now)
        except LeadershipLost:
            return queued
        if expired:
            log.info("deleted %d expired reports", expired)
        return queued
