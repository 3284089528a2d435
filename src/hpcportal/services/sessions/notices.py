"""Bell notifications of interactive sessions (issue 15): ready, and ending soon.

The tracker calls ``notices`` inside its pass's transaction, so a notification
exists exactly when the state that caused it was stored. Each row's key is
(username, job_id, event) with ``kind`` ``session``, ``job_id`` the session's Slurm
job and ``event`` ``ready`` or ``ending`` (``delivery.routing.EVENT_OF``): inserted
*if absent* (``detector.insert_new``), so a session is told ready once and ending
soon once, however many passes or replicas see it. ``insert_new`` also routes the
rows to the owner's subscribed channels (``session_ready``, ``session_ending``).
The job detector's own ``time_limit`` event of the same job is a different event,
so the two never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hpcportal.db.models import InteractiveSession
from hpcportal.services.notifications.detector import (
    Delivery,
    deliveries_for,
    insert_new,
    new_row,
)

KIND = "session"
READY = "ready"
ENDING = "ending"


def ending_soon(row: InteractiveSession, now: datetime, minutes: int) -> bool:
    """Running, and less than ``minutes`` left of its job's time limit."""
    if row.state != "running" or row.job_id is None or row.ends_at is None:
        return False
    return now < row.ends_at < now + timedelta(minutes=minutes)


def notices(
    session: Session,
    ready: Sequence[InteractiveSession],
    ending: Sequence[InteractiveSession],
    now: datetime,
) -> list[Delivery]:
    """Store the ready and ending-soon rows not stored yet; what to push for those
    this call added (none when another pass or replica stored them first)."""
    rows = [_ready(r, now) for r in ready if r.job_id is not None]
    rows += [_ending(r, now) for r in ending if r.job_id is not None]
    if not rows:
        return []
    rows.sort(key=lambda n: (n["username"], n["job_id"], n["event"]))
    inserted = insert_new(session, rows, ["username", "job_id", "event"])
    return deliveries_for(session, inserted)


def _params(row: InteractiveSession) -> dict[str, Any]:
    return {"session_id": row.id, "app": row.app_name, "job_id": str(row.job_id)}


def _ready(row: InteractiveSession, now: datetime) -> dict[str, Any]:
    params = _params(row)
    body = f"Your {row.app_name} session {row.id} is ready to connect."
    return new_row(
        row.username, KIND, READY, "Interactive session ready", body, params, now,
        job_id=str(row.job_id),
    )  # fmt: skip


def _ending(row: InteractiveSession, now: datetime) -> dict[str, Any]:
    assert row.ends_at is not None
    minutes = max(1, round((row.ends_at - now).total_seconds() / 60))
    params = {**_params(row), "minutes_left": minutes}
    body = (
        f"Your {row.app_name} session {row.id} ends in about {minutes} minutes, "
        "when its job reaches its time limit."
    )
    return new_row(
        row.username, KIND, ENDING, "Interactive session ending soon", body, params, now,
        job_id=str(row.job_id),
    )  # fmt: skip
