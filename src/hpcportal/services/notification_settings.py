"""Which job events become notifications, chosen per person.

Every job used to announce both "started" and "completed", so a busy user's bell
filled up with news nobody needed. Each job event (``notifications.EVENTS``) now has
a per-user switch. The defaults: ``started`` off (a job starting is rarely news; its
end is), every other event on. Only switches differing from the default need a row
(``notification_preferences``), but a saved choice is stored either way so a later
change of default does not flip what someone chose.

The detector (``NotificationDetector``) asks ``wanted_events`` for the users of a
refresh's events, in the same transaction that inserts them: an event switched off is
not stored at all (it is not hidden later), and a switch turned on applies from the
next job event on. Disk alerts are not switchable: they warn before work is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.models import NotificationPreference
from hpcportal.db.upsert import upsert
from hpcportal.services.auth import utcnow

#: Whether each job event makes a notification when a person has not chosen.
DEFAULTS: dict[str, bool] = {
    "started": False,
    "completed": True,
    "failed": True,
    "timed_out": True,
    "cancelled": True,
    "time_limit": True,
}


class NotificationSettings(BaseModel):
    """Which job events notify you (``true``) and which do not."""

    started: bool = DEFAULTS["started"]
    completed: bool = DEFAULTS["completed"]
    failed: bool = DEFAULTS["failed"]
    timed_out: bool = DEFAULTS["timed_out"]
    cancelled: bool = DEFAULTS["cancelled"]
    time_limit: bool = DEFAULTS["time_limit"]


class NotificationSettingsChange(BaseModel):
    """The switches to change; events left out keep their setting."""

    model_config = ConfigDict(extra="forbid")

    started: bool | None = None
    completed: bool | None = None
    failed: bool | None = None
    timed_out: bool | None = None
    cancelled: bool | None = None
    time_limit: bool | None = None


def _choices(session: Session, usernames: Iterable[str]) -> dict[str, dict[str, bool]]:
    names = sorted(set(usernames))
    chosen: dict[str, dict[str, bool]] = {name: {} for name in names}
    if not names:
        return chosen
    rows = session.execute(
        select(
            NotificationPreference.username,
            NotificationPreference.event,
            NotificationPreference.enabled,
        ).where(NotificationPreference.username.in_(names))
    ).all()
    for username, event, enabled in rows:
        if event in DEFAULTS:
            chosen[username][event] = bool(enabled)
    return chosen


def read_settings(session: Session, username: str) -> NotificationSettings:
    return NotificationSettings(**{**DEFAULTS, **_choices(session, [username])[username]})


def change_settings(
    session: Session,
    username: str,
    change: NotificationSettingsChange,
    now: datetime | None = None,
) -> NotificationSettings:
    """Store the switches given in ``change`` and return them all.

    One INSERT ... ON CONFLICT DO UPDATE (ON DUPLICATE KEY UPDATE on MariaDB), so two
    replicas saving the same person's first choice at once cannot collide."""
    rows = [
        {"username": username, "event": event, "enabled": enabled, "updated_at": now or utcnow()}
        for event, enabled in sorted(change.model_dump(exclude_none=True).items())
    ]
    if rows:
        session.execute(
            upsert(
                session,
                NotificationPreference,
                rows,
                ["username", "event"],
                lambda new: {"enabled": new.enabled, "updated_at": new.updated_at},
            )
        )
    return read_settings(session, username)


def wanted_events(session: Session, usernames: Iterable[str]) -> dict[str, frozenset[str]]:
    """For each user, the job events that should become notifications (one query)."""
    return {
        username: frozenset(e for e, on in {**DEFAULTS, **chosen}.items() if on)
        for username, chosen in _choices(session, usernames).items()
    }
