"""Detecting job events after each refresh and storing each once (across replicas)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import JobSeen, Notification
from hpcportal.db.session import Database
from hpcportal.db.upsert import insert_if_absent, upsert
from hpcportal.errors import PortalError
from hpcportal.services.auth import utcnow
from hpcportal.services.delivery.routing import (
    Routable,
    route_all,
    route_notifications,
    subscription_event,
)
from hpcportal.services.notification_settings import wanted_events
from hpcportal.services.notifications.model import (
    ALWAYS_SHOWN,
    CHUNK,
    ENDED,
    GIVE_UP_AFTER,
    LOOKUP_BACKOFF,
    MAX_LOOKUP,
    PRUNE_EVERY,
    SEEN_RETENTION,
    NotificationOut,
)
from hpcportal.services.notifications.texts import (
    JobEvent,
    job_ran,
    make_event,
    minutes_left,
    record_ran,
    tracked,
    transition_events,
)
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__package__)  # one logger name for the whole package

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
        #: With several replicas: the leader's fence (``ha.Leadership.fence``), run first
        #: in the transaction that stores events, so a replaced leader stores nothing.
        self.fence: Callable[[Session], None] | None = None

    def forget(self) -> None:
        """Drop what this process remembers of jobs (on becoming the leader: another
        replica may have stored events since), so the next refresh reads it again."""
        with self._lock:
            self._seen = None
            self._missing_since.clear()
            self._lookup_after = None

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
                        make_event("time_limit", job.user, job.id, job.name, job.state,
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
            make_event(e, job.user, job.id, job.name, job.state, exit_code=job.exit_code,
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
            job_id for job_id, s in seen.items() if job_id not in present and s.status not in ENDED
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
            if record is None or record.status not in ENDED:
                since = self._missing_since.setdefault(job_id, now)
                if now - since >= GIVE_UP_AFTER:
                    log.info("job %s left the queue and is not in accounting; forgotten", job_id)
                    dropped.append(job_id)
                continue
            for e in transition_events(old.status, record.status, ran=record_ran(record)):
                events.append(
                    make_event(e, old.username, job_id, record.name, record.state,
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
            if job_id not in present and s.status in ENDED and s.updated_at < cutoff
        ]

    def _store(
        self, events: list[JobEvent], changed: dict[str, Seen], dropped: list[str], now: datetime
    ) -> list[Delivery]:
        if not (events or changed or dropped):
            return []
        with self.database.session() as session:
            if self.fence is not None:
                self.fence(session)
            wanted = _wanted(session, events)
            inserted = _insert_if_absent(session, wanted, now)  # routed as inserted
            _route_unshown(session, events, wanted, now)
            _upsert_seen(session, changed)
            for chunk in _chunks(sorted(dropped)):
                session.execute(delete(JobSeen).where(JobSeen.job_id.in_(chunk)))
            deliveries = deliveries_for(session, inserted)
        return deliveries


def _wanted(session: Session, events: list[JobEvent]) -> list[JobEvent]:
    """The events their owners want as notifications (``notification_settings``);
    the rest are dropped here, before they exist. ``held`` and ``requeued`` have no
    switch (``model.ALWAYS_SHOWN``)."""
    wanted = wanted_events(session, {e.username for e in events})
    return [e for e in events if e.event in wanted[e.username] or e.event in ALWAYS_SHOWN]


def _route_unshown(
    session: Session, events: list[JobEvent], wanted: list[JobEvent], now: datetime
) -> None:
    """Events switched off for the bell may still be subscribed on a channel (e.g. job
    started by email): routed here with the key their bell row would have had
    (``routing.notification_key``), so no replica sends one twice."""
    shown = {e.key for e in wanted}
    route_all(
        session,
        [
            Routable(e.username, event, f"job:{e.username}:{e.job_id}:{e.event}", e.body,
                     dict(e.params))
            for e in events
            if e.key not in shown and (event := subscription_event("job", e.event)) is not None
        ],
        now,
    )  # fmt: skip


def deliveries_for(session: Session, inserted: Sequence[Notification]) -> list[Delivery]:
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


def _insert_if_absent(
    session: Session, events: list[JobEvent], now: datetime
) -> list[Notification]:
    """Insert each job event unless it exists; return only the rows this call inserted."""
    unique = sorted({e.key: e for e in events}.values(), key=lambda e: e.key)
    rows = [
        new_row(e.username, "job", e.event, e.title, e.body, e.params, now, job_id=e.job_id)
        for e in unique
    ]
    return insert_new(session, rows, ["username", "job_id", "event"])


def new_row(
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


def insert_new(
    session: Session, rows: list[dict[str, Any]], unique_key: list[str]
) -> list[Notification]:
    """INSERT ... ON CONFLICT (unique_key) DO NOTHING (``db.upsert``), in the rows' (key)
    order so that replicas inserting the same rows cannot deadlock; return the rows
    this call added.

    The rows added are routed to their owners' subscribed channels here, in the same
    transaction (``delivery.routing``): every producer of bell notifications gets
    email, Slack and webhook delivery without a second call."""
    inserted: list[Notification] = []
    for chunk in _chunks(rows):
        stmt = insert_if_absent(session, Notification, chunk, unique_key).returning(Notification.id)
        ids = list(session.scalars(stmt))
        if ids:
            inserted += session.scalars(
                select(Notification).where(Notification.id.in_(ids)).order_by(Notification.id)
            ).all()
    route_notifications(session, inserted)
    return inserted


def _upsert_seen(session: Session, changed: dict[str, Seen]) -> None:
    """One batch per refresh, of the changed jobs only, in key order."""
    if not changed:
        return
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
        stmt = upsert(
            session,
            JobSeen,
            chunk,
            ["job_id"],
            lambda new: {
                "username": new.username,
                "status": new.status,
                # Another replica may have warned already: never take that back.
                "warned": or_(JobSeen.warned, new.warned),
                "updated_at": new.updated_at,
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
