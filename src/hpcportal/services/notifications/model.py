"""Notifications' vocabulary: job events, limits, and the notification as the API shows it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from hpcportal.db.models import Notification
from hpcportal.slurm.states import JobStatus

Event = Literal[
    "started", "completed", "failed", "timed_out", "cancelled", "time_limit", "held", "requeued"
]
EVENTS: tuple[Event, ...] = (
    "started", "completed", "failed", "timed_out", "cancelled", "time_limit",
)  # fmt: skip

#: Events without a per-user bell switch (``notification_settings``): a hold or a requeue
#: stops work the owner is waiting for, so the bell always shows it; channels still
#: follow subscriptions (``delivery.routing``). Once per job: the bell row's key is
#: (username, job_id, event), so a job held, released and held again tells once.
ALWAYS_SHOWN: frozenset[str] = frozenset({"held", "requeued"})

END_EVENTS: dict[JobStatus, Event] = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT: "timed_out",
    JobStatus.CANCELLED: "cancelled",
}
WAITING = frozenset({JobStatus.QUEUED, JobStatus.QUEUED_HELD, JobStatus.UNDETERMINED})
ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.COMPLETING, JobStatus.SUSPENDED})
ENDED = frozenset(END_EVENTS)

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
