"""Job notifications: state changes become messages for the job's owner, once each.

After each refresh the ``NotificationDetector`` compares every job's status with
the status last *seen* (the ``job_seen`` table, which every replica shares and which
survives restarts) and turns transitions into events:

- ``started``: queued (or never seen) to running; also a job first seen finished
  that did run (it went through both between two looks);
- ``completed``, ``failed``, ``timed_out``, ``cancelled``: reaching that end state;
- ``time_limit``: running with less than ``notify_time_left_minutes`` left (once,
  and only for jobs whose whole limit is longer than that, or every short job would
  be warned when it starts).

Each event is inserted *if absent* under the unique key (username, job_id, event),
so it exists once however many replicas detect it or how often the portal restarts;
only the process whose insert succeeded pushes it to the owner's sockets. A job that
left the queue while the portal was not looking is looked up in accounting, with one
``sacct`` for all such jobs per refresh.

When the ``job_seen`` table is empty at start-up (a new installation), the first
refresh only records what it sees: jobs that finished before the portal ever looked
are not announced.

Disk alerts (``services/disk_alerts.py``) are notifications too (``kind`` ``disk``):
``disk_warning`` and ``disk_critical`` when a target's alert starts or escalates,
``disk_cleared`` when its usage drops back below the threshold. They go to every
admin for shared storage and node scratch, and to the user alone for their own
quota or file area; ``store_disk_events`` inserts them under the unique key
(username, target, episode, event), so they too exist once whatever the number of
replicas, and returns what this process must push.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import JobSeen, Notification
from hpcportal.db.session import Database
from hpcportal.errors import NotFound, PortalError
from hpcportal.services.auth import utcnow
from hpcportal.services.identity import Principal
from hpcportal.services.notification_settings import wanted_events
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

Event = Literal["started", "completed", "failed", "timed_out", "cancelled", "time_limit"]
EVENTS: tuple[Event, ...] = (
    "started", "completed", "failed", "timed_out", "cancelled", "time_limit",
)  # fmt: skip

END_EVENTS: dict[JobStatus, Event] = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT: "timed_out",
    JobStatus.CANCELLED: "cancelled",
}
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD, JobStatus.UNDETERMINED})
_ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.COMPLETING, JobStatus.SUSPENDED})
_ENDED = frozenset(END_EVENTS)

#: How long the status of a finished job is kept after it left the queue.
SEEN_RETENTION = timedelta(days=1)
#: How often rows past that retention are deleted.
PRUNE_EVERY = timedelta(minutes=10)
#: A job that left the queue and that accounting does not know after this long is
#: forgotten without an event (accounting off, or the job never reached it).
GIVE_UP_AFTER = timedelta(minutes=10)
#: Most jobs looked up in the one ``sacct`` of a refresh (the rest wait a refresh).
MAX_LOOKUP = 500
#: After a failed ``sacct`` (slurmdbd down), the next try waits this long.
LOOKUP_BACKOFF = timedelta(seconds=30)
#: Rows per INSERT statement (SQLite allows 32,766 bound values).
CHUNK = 500
MAX_PAGE_SIZE = 200


# --- The notification as the API shows it -----------------------------------------------


class NotificationOut(BaseModel):
    """A notification: short English ``title``/``body``, plus ``event`` and ``params``
    to translate them: for ``kind`` ``job`` the job id and name, state, exit code,
    nodes, minutes left; for ``kind`` ``disk`` (``job_id`` null, ``target`` set) the
    target's ``area`` (shared, scratch, quota, area), ``name``, ``level``,
    ``percent`` and ``threshold``."""

    id: int
    kind: str = "job"
    job_id: str | None
    target: str | None = None
    event: str
    title: str
    body: str
    params: dict[str, Any]
    created_at: datetime
    read_at: datetime | None = None

    @classmethod
    def of(cls, row: Notification) -> NotificationOut:
        return cls(
            id=row.id,
            kind=row.kind or "job",
            job_id=row.job_id,
            target=row.target,
            event=row.event,
            title=row.title,
            body=row.body,
            params=dict(row.params or {}),
            created_at=row.created_at,
            read_at=row.read_at,
        )


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    page: int
    limit: int
    unread: int


class UnreadCount(BaseModel):
    unread: int


# --- Reading and managing one's own notifications -------------------------------------


def unread_count(session: Session, username: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.username == username, Notification.read_at.is_(None))
        )
        or 0
    )


def list_notifications(
    session: Session, who: Principal, *, unread: bool | None, page: int, limit: int
) -> NotificationPage:
    """The user's notifications, newest first; ``unread`` filters on read state."""
    where = [Notification.username == who.username]
    if unread is True:
        where.append(Notification.read_at.is_(None))
    elif unread is False:
        where.append(Notification.read_at.is_not(None))
    total = session.scalar(select(func.count()).select_from(Notification).where(*where)) or 0
    rows = session.scalars(
        select(Notification)
        .where(*where)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return NotificationPage(
        items=[NotificationOut.of(r) for r in rows],
        total=int(total),
        page=page,
        limit=limit,
        unread=unread_count(session, who.username),
    )


def _own(session: Session, who: Principal, notification_id: int) -> Notification:
    """The user's notification; anyone else's is "not found", so ids reveal nothing."""
    row = session.get(Notification, notification_id)
    if row is None or row.username != who.username:
        raise NotFound(f"No notification {notification_id}.")
    return row


def mark_read(
    session: Session, who: Principal, notification_id: int, now: datetime | None = None
) -> NotificationOut:
    row = _own(session, who, notification_id)
    if row.read_at is None:
        row.read_at = now or utcnow()
    session.flush()
    return NotificationOut.of(row)


def mark_all_read(session: Session, who: Principal, now: datetime | None = None) -> int:
    """Mark every unread notification of the user read; returns how many were."""
    result = session.execute(
        update(Notification)
        .where(Notification.username == who.username, Notification.read_at.is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_notification(session: Session, who: Principal, notification_id: int) -> None:
    session.delete(_own(session, who, notification_id))


# --- Texts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One detected event, before it is stored."""

    username: str
    job_id: str
    event: Event
    title: str
    body: str
    params: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.username, self.job_id, self.event)


def describe(
    event: Event,
    job_id: str,
    name: str,
    *,
    state: str,
    exit_code: int | None = None,
    nodes: str | None = None,
    minutes_left: int | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Title, body and the parameters a front end needs to say the same in its language."""
    params: dict[str, Any] = {"job_id": job_id, "job_name": name, "state": state}
    what = f'Job "{name}" ({job_id})'
    if event == "started":
        params["nodes"] = nodes
        return "Job started", f"{what} started" + (f" on {nodes}." if nodes else "."), params
    if event == "completed":
        params["exit_code"] = exit_code
        return "Job completed", f"{what} completed.", params
    if event == "failed":
        params["exit_code"] = exit_code
        code = f" with exit code {exit_code}" if exit_code else ""
        return "Job failed", f"{what} failed{code}.", params
    if event == "timed_out":
        return "Job timed out", f"{what} was stopped at its time limit.", params
    if event == "cancelled":
        return "Job cancelled", f"{what} was cancelled.", params
    params["minutes_left"] = minutes_left
    return (
        "Job nearing its time limit",
        f"{what} has about {minutes_left} min left before its time limit.",
        params,
    )


def _event(
    event: Event,
    user: str,
    job_id: str,
    name: str,
    state: str,
    *,
    exit_code: int | None = None,
    nodes: str | None = None,
    minutes_left: int | None = None,
) -> JobEvent:
    title, body, params = describe(
        event,
        job_id,
        name,
        state=state,
        exit_code=exit_code,
        nodes=nodes,
        minutes_left=minutes_left,
    )
    return JobEvent(user, job_id, event, title, body, params)


def transition_events(previous: JobStatus | None, current: JobStatus, *, ran: bool) -> list[Event]:
    """Events for a job going from ``previous`` (``None``: never seen) to ``current``.

    ``ran`` says whether a job that has ended did run (a cancelled pending job did not).
    """
    if previous in _ENDED:
        return []  # already announced (a requeued job starts over quietly)
    events: list[Event] = []
    waiting = previous is None or previous in _WAITING
    if waiting and (current in _ACTIVE or (current in _ENDED and ran)):
        events.append("started")
    if current in _ENDED:
        events.append(END_EVENTS[current])
    return events


def job_ran(job: Job) -> bool:
    return bool(job.batch_host or job.nodes)


def record_ran(record: AccountingRecord) -> bool:
    return record.start_time is not None and record.nodes not in (None, "None assigned")


def tracked(job: Job) -> bool:
    """Jobs with events: not the record of an array's still-pending tasks, whose id
    changes as tasks start (each task is tracked on its own once it exists)."""
    return job.array is None or job.array.task_id is not None


def minutes_left(job: Job, now: datetime, threshold: int) -> int | None:
    """Minutes before a running job hits its limit, when under ``threshold``."""
    if job.status is not JobStatus.RUNNING or job.start_time is None:
        return None
    limit = job.time_limit_minutes
    if limit is None or limit <= threshold:
        return None
    left = (job.start_time + timedelta(minutes=limit) - now).total_seconds() / 60
    if 0 < left < threshold:
        return max(1, round(left))
    return None


# --- Detecting events after each refresh -------------------------------------------------


class AccountingSource(Protocol):
    """What the detector needs of ``SlurmAdapter``: one ``sacct`` for many jobs."""

    def accounting(
        self,
        start: datetime,
        end: datetime,
        *,
        users: Sequence[str] = (),
        accounts: Sequence[str] = (),
        partitions: Sequence[str] = (),
        states: Sequence[str] = (),
        job_ids: Sequence[str] = (),
    ) -> list[AccountingRecord]: ...


@dataclass(slots=True)
class Seen:
    username: str
    status: JobStatus
    warned: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """A notification this process stored first, to push to its owner's sockets."""

    username: str
    notification: NotificationOut
    unread: int


def _status(value: str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        return JobStatus.UNDETERMINED


class NotificationDetector:
    """Turns successive snapshots into stored notifications. Blocking: run it in a
    worker thread; one call at a time (a lock makes sure)."""

    def __init__(
        self,
        database: Database,
        accounting: AccountingSource,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.accounting = accounting
        self.threshold = settings.notify_time_left_minutes
        self._clock = clock
        self._seen: dict[str, Seen] | None = None
        self._missing_since: dict[str, datetime] = {}
        self._pruned_at: datetime | None = None
        self._lookup_after: datetime | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Seen]:
        with self.database.session() as session:
            rows = session.execute(
                select(JobSeen.job_id, JobSeen.username, JobSeen.status, JobSeen.warned,
                       JobSeen.updated_at)
            ).all()  # fmt: skip
        return {r[0]: Seen(r[1], _status(r[2]), bool(r[3]), r[4]) for r in rows}

    def process(self, snap: ClusterSnapshot) -> list[Delivery]:
        """Detect, store and return this refresh's new notifications."""
        with self._lock:
            return self._process(snap)

    def _process(self, snap: ClusterSnapshot) -> list[Delivery]:
        now = self._clock()
        first = self._seen is None
        seen = self._seen if self._seen is not None else self._load()
        baseline = first and not seen
        events: list[JobEvent] = []
        changed: dict[str, Seen] = {}
        present: set[str] = set()
        for job in snap.jobs:
            if not tracked(job):
                continue
            present.add(job.id)
            old = seen.get(job.id)
            warned = old.warned if old is not None else False
            if not baseline:
                events += self._job_events(job, old, now)
                if not warned and (left := minutes_left(job, now, self.threshold)) is not None:
                    events.append(
                        _event("time_limit", job.user, job.id, job.name, job.state,
                               minutes_left=left)
                    )  # fmt: skip
                    warned = True
            if old is None or old.status is not job.status or old.warned != warned:
                changed[job.id] = Seen(job.user, job.status, warned, now)
        dropped = self._resolve_vanished(seen, present, events, changed, now)
        dropped += self._expired(seen, present, now)
        deliveries = self._store(events, changed, dropped, now)
        # Only after the commit: a failed write is detected again next refresh.
        seen.update(changed)
        for job_id in dropped:
            seen.pop(job_id, None)
            self._missing_since.pop(job_id, None)
        self._seen = seen
        return deliveries

    def _job_events(self, job: Job, old: Seen | None, now: datetime) -> list[JobEvent]:
        before = old.status if old is not None else None
        if before is job.status:
            return []
        return [
            _event(e, job.user, job.id, job.name, job.state, exit_code=job.exit_code,
                   nodes=job.nodes)
            for e in transition_events(before, job.status, ran=job_ran(job))
        ]  # fmt: skip

    def _resolve_vanished(
        self,
        seen: dict[str, Seen],
        present: set[str],
        events: list[JobEvent],
        changed: dict[str, Seen],
        now: datetime,
    ) -> list[str]:
        """Jobs that left the queue before we saw them end: ask accounting, once."""
        vanished = sorted(
            job_id for job_id, s in seen.items() if job_id not in present and s.status not in _ENDED
        )[:MAX_LOOKUP]
        if not vanished or (self._lookup_after is not None and now < self._lookup_after):
            return []
        try:
            records = self.accounting.accounting(now - timedelta(days=365), now, job_ids=vanished)
        except PortalError as exc:
            log.warning("could not look up %d finished jobs in accounting: %s", len(vanished), exc)
            self._lookup_after = now + LOOKUP_BACKOFF
            return []
        self._lookup_after = None
        found = {r.id: r for r in records}
        found.update({str(r.job_id): r for r in records if r.array is None})
        dropped: list[str] = []
        for job_id in vanished:
            old, record = seen[job_id], found.get(job_id)
            if record is None or record.status not in _ENDED:
                since = self._missing_since.setdefault(job_id, now)
                if now - since >= GIVE_UP_AFTER:
                    log.info("job %s left the queue and is not in accounting; forgotten", job_id)
                    dropped.append(job_id)
                continue
            for e in transition_events(old.status, record.status, ran=record_ran(record)):
                events.append(
                    _event(e, old.username, job_id, record.name, record.state,
                           exit_code=record.exit_code, nodes=record.nodes)
                )  # fmt: skip
            changed[job_id] = Seen(old.username, record.status, old.warned, now)
        return dropped

    def _expired(self, seen: dict[str, Seen], present: set[str], now: datetime) -> list[str]:
        """Finished jobs gone from the queue for a while: nothing more can happen to them."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return []
        self._pruned_at = now
        cutoff = now - SEEN_RETENTION
        return [
            job_id
            for job_id, s in seen.items()
            if job_id not in present and s.status in _ENDED and s.updated_at < cutoff
        ]

    def _store(
        self, events: list[JobEvent], changed: dict[str, Seen], dropped: list[str], now: datetime
    ) -> list[Delivery]:
        if not (events or changed or dropped):
            return []
        with self.database.session() as session:
            inserted = _insert_if_absent(session, _wanted(session, events), now)
            _upsert_seen(session, changed)
            for chunk in _chunks(sorted(dropped)):
                session.execute(delete(JobSeen).where(JobSeen.job_id.in_(chunk)))
            deliveries = _deliveries(session, inserted)
        return deliveries


def _wanted(session: Session, events: list[JobEvent]) -> list[JobEvent]:
    """The events their owners want as notifications (``notification_settings``);
    the rest are dropped here, before they exist."""
    wanted = wanted_events(session, {e.username for e in events})
    return [e for e in events if e.event in wanted[e.username]]


def _deliveries(session: Session, inserted: Sequence[Notification]) -> list[Delivery]:
    """What to push for rows this process inserted, each with the unread count its
    user had once it existed (so counts pushed in a row go 1, 2, ...)."""
    counts = _unread_counts(session, {n.username for n in inserted})
    deliveries: list[Delivery] = []
    remaining = {user: sum(1 for n in inserted if n.username == user) for user in counts}
    for row in inserted:
        remaining[row.username] -= 1
        unread = counts[row.username] - remaining[row.username]
        deliveries.append(Delivery(row.username, NotificationOut.of(row), unread))
    return deliveries


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (SQLite and PostgreSQL have the same one)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"notifications need SQLite or PostgreSQL, not {name}")


def _insert_if_absent(
    session: Session, events: list[JobEvent], now: datetime
) -> list[Notification]:
    """Insert each job event unless it exists; return only the rows this call inserted."""
    unique = sorted({e.key: e for e in events}.values(), key=lambda e: e.key)
    rows = [
        _row(e.username, "job", e.event, e.title, e.body, e.params, now, job_id=e.job_id)
        for e in unique
    ]
    return _insert_new(session, rows, ["username", "job_id", "event"])


def _row(
    username: str,
    kind: str,
    event: str,
    title: str,
    body: str,
    params: Any,
    now: datetime,
    *,
    job_id: str | None = None,
    target: str | None = None,
    episode: int | None = None,
) -> dict[str, Any]:
    return {
        "username": username,
        "kind": kind,
        "job_id": job_id,
        "target": target,
        "episode": episode,
        "event": event,
        "title": title,
        "body": body,
        "params": params,
        "created_at": now,
        "read_at": None,
    }


def _insert_new(
    session: Session, rows: list[dict[str, Any]], unique_key: list[str]
) -> list[Notification]:
    """INSERT ... ON CONFLICT (unique_key) DO NOTHING, in the rows' (key) order so that
    replicas inserting the same rows cannot deadlock; return the rows this call added."""
    insert = _insert_for(session)
    inserted: list[Notification] = []
    for chunk in _chunks(rows):
        stmt = (
            insert(Notification)
            .values(list(chunk))
            .on_conflict_do_nothing(index_elements=unique_key)
            .returning(Notification.id)
        )
        ids = list(session.scalars(stmt))
        if ids:
            inserted += session.scalars(
                select(Notification).where(Notification.id.in_(ids)).order_by(Notification.id)
            ).all()
    return inserted


def _upsert_seen(session: Session, changed: dict[str, Seen]) -> None:
    """One batch per refresh, of the changed jobs only, in key order."""
    if not changed:
        return
    insert = _insert_for(session)
    rows = [
        {
            "job_id": job_id,
            "username": s.username,
            "status": s.status.value,
            "warned": s.warned,
            "updated_at": s.updated_at,
        }
        for job_id, s in sorted(changed.items())
    ]
    for chunk in _chunks(rows):
        stmt = insert(JobSeen).values(list(chunk))
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_id"],
            set_={
                "username": stmt.excluded.username,
                "status": stmt.excluded.status,
                # Another replica may have warned already: never take that back.
                "warned": or_(JobSeen.warned, stmt.excluded.warned),
                "updated_at": stmt.excluded.updated_at,
            },
        )
        session.execute(stmt)


def _unread_counts(session: Session, users: set[str]) -> dict[str, int]:
    if not users:
        return {}
    rows = session.execute(
        select(Notification.username, func.count())
        .where(Notification.username.in_(sorted(users)), Notification.read_at.is_(None))
        .group_by(Notification.username)
    ).all()
    counts = {user: 0 for user in users}
    counts.update({user: int(n) for user, n in rows})
    return counts


# --- Disk alerts (services/disk_alerts.py) -------------------------------------------------

DiskEventName = Literal["disk_warning", "disk_critical", "disk_cleared"]
DiskArea = Literal["shared", "scratch", "quota", "area"]

_DISK_TITLES: dict[str, str] = {
    "disk_warning": "Disk usage warning",
    "disk_critical": "Disk usage critical",
    "disk_cleared": "Disk usage back below threshold",
}
_DISK_ACTIVE: dict[str, str] = {
    "shared": "Shared storage {name} is {percent} full (threshold {threshold}).",
    "scratch": "Scratch on node {name} is {percent} full (threshold {threshold}).",
    "quota": "You have used {percent} of your quota on {name} (threshold {threshold}).",
    "area": "The disk holding your file area {name} is {percent} full (threshold {threshold}).",
}
_DISK_CLEARED: dict[str, str] = {
    "shared": "Shared storage {name} is back below the threshold: {percent} used.",
    "scratch": "Scratch on node {name} is back below the threshold: {percent} used.",
    "quota": "Your quota use on {name} is back below the threshold: {percent}.",
    "area": "The disk holding your file area {name} is back below the threshold: {percent} used.",
}


@dataclass(frozen=True, slots=True)
class DiskEvent:
    """One disk alert notification for one user, before it is stored."""

    username: str
    target: str
    episode: int
    event: DiskEventName
    title: str
    body: str
    params: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.username, self.target, self.episode, self.event)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} %"


def describe_disk(
    event: DiskEventName,
    *,
    target: str,
    area: DiskArea,
    name: str,
    percent: float | None,
    threshold: float,
    used_bytes: int | None = None,
    total_bytes: int | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Title, body and the parameters a front end needs to say the same in its language.

    ``name`` is what the alert is about: a path for shared storage, a node for
    scratch, a file area (``home``) or the file system for a quota."""
    level = "info" if event == "disk_cleared" else event.removeprefix("disk_")
    params: dict[str, Any] = {
        "target": target,
        "area": area,
        "name": name,
        "level": level,
        "percent": percent,
        "threshold": threshold,
        "used_bytes": used_bytes,
        "total_bytes": total_bytes,
    }
    texts = _DISK_CLEARED if event == "disk_cleared" else _DISK_ACTIVE
    body = texts[area].format(name=name, percent=_pct(percent), threshold=_pct(threshold))
    return _DISK_TITLES[event], body, params


def disk_event(username: str, episode: int, event: DiskEventName, **details: Any) -> DiskEvent:
    title, body, params = describe_disk(event, **details)
    return DiskEvent(username, str(details["target"]), episode, event, title, body, params)


def store_disk_events(
    session: Session, events: Iterable[DiskEvent], now: datetime | None = None
) -> list[Delivery]:
    """Insert each disk notification unless it exists (unique key username, target,
    episode, event), in key order; return what this call inserted, to push."""
    unique = sorted({e.key: e for e in events}.values(), key=lambda e: e.key)
    when = now or utcnow()
    rows = [
        _row(
            e.username,
            "disk",
            e.event,
            e.title,
            e.body,
            e.params,
            when,
            target=e.target,
            episode=e.episode,
        )
        for e in unique
    ]
    inserted = _insert_new(session, rows, ["username", "target", "episode", "event"])
    return _deliveries(session, inserted)
