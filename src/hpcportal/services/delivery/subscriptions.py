"""Subscriptions: which events reach which of a person's own channels, and when.

Nothing reaches a channel unless its owner subscribed (the browser bell is the only
default): a new user gets job failures by email only after adding and verifying an
address and subscribing ``job_failed`` to it. A subscription's options:

* ``mode``: ``immediate`` (each event its own message) or an ``hourly``/``daily``
  digest (held, then folded into one message per channel and period by the leader);
* quiet hours ``quiet_start``-``quiet_end`` ("HH:MM" in ``time_zone``; start after
  end spans midnight): a message due in them is held until they end, never dropped;
* the channel's rate limit (``DeliveryChannelOption.rate_limit_per_hour``): beyond N
  messages in the past hour, the rest fold into the next hourly digest.

The rules here are pure functions of a time and the options (``quiet_until``,
``period``) so the unit tests pin them without a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.delivery_tables import DeliveryChannel, DeliverySubscription
from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.services.auth import utcnow
from hpcportal.services.identity import Principal

#: The events a person can subscribe to (``admin_alert`` for admins only).
EVENTS: tuple[str, ...] = (
    "job_started",
    "job_finished",
    "job_failed",
    "job_timed_out",
    "job_requeued",
    "job_held",
    "session_ready",
    "session_ending",
    "idle_gpu",
    "disk_alert",
    "report_ready",
    "admin_alert",
)
ADMIN_EVENTS = frozenset({"admin_alert"})
Mode = Literal["immediate", "hourly", "daily"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {name!r}") from exc


# --- The rules ---------------------------------------------------------------------------


def quiet_until(now: datetime, start: str | None, end: str | None, tz: str) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not in them.

    Local wall-clock times in ``tz``: 22:00-07:00 spans midnight (quiet from 22:00 to
    07:00 the next morning); equal start and end mean no quiet hours."""
    if not start or not end or start == end:
        return None
    local = now.astimezone(zone(tz))
    s, e = time.fromisoformat(start), time.fromisoformat(end)
    t = local.time().replace(tzinfo=None)
    today = local.date()
    if s < e:
        inside, end_day = s <= t < e, today
    elif t >= s:
        inside, end_day = True, today + timedelta(days=1)
    else:
        inside, end_day = t < e, today
    if not inside:
        return None
    return _at(end_day, e, tz)


def _at(day: date, at: time, tz: str) -> datetime:
    return datetime.combine(day, at, tzinfo=zone(tz)).astimezone(UTC)


def period(mode: str, now: datetime, tz: str) -> tuple[str, datetime]:
    """The digest period ``now`` falls in: its key and when it ends (UTC).

    Hourly periods are UTC hours (an hour is an hour everywhere but in half-hour
    zones, where it still is a fine digest); daily periods are the owner's local days,
    so the daily digest arrives at local midnight."""
    if mode == "daily":
        local = now.astimezone(zone(tz))
        day = local.date()
        return f"daily:{day.isoformat()}@{tz}", _at(day + timedelta(days=1), time(0), tz)
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return f"hourly:{hour:%Y-%m-%dT%H}Z", hour + timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Hold:
    """Why and until when a message waits instead of going out now."""

    reason: Literal["digest", "quiet", "rate"]
    period_key: str
    release_at: datetime


def decide(
    sub: DeliverySubscription, now: datetime, *, sent_last_hour: int, limit: int | None
) -> Hold | None:
    """None: send now. Otherwise how the message waits (digest, quiet hours, rate)."""
    tz = sub.time_zone
    if sub.mode in ("hourly", "daily"):
        key, ends = period(sub.mode, now, tz)
        later = quiet_until(ends, sub.quiet_start, sub.quiet_end, tz)
        return Hold("digest", key, later or ends)
    until = quiet_until(now, sub.quiet_start, sub.quiet_end, tz)
    if until is not None:
        return Hold("quiet", f"quiet:{until:%Y-%m-%dT%H:%M}Z", until)
    if limit is not None and sent_last_hour >= limit:
        key, ends = period("hourly", now, tz)
        later = quiet_until(ends, sub.quiet_start, sub.quiet_end, tz)
        return Hold("rate", key, later or ends)
    return None


# --- The owner's rules (API, page, CLI) --------------------------------------------------


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str
    channel_id: int
    mode: Mode = "immediate"
    quiet_start: str | None = None
    quiet_end: str | None = None
    time_zone: str = Field(default="UTC", max_length=64)

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _HHMM.match(value):
            raise ValueError("use HH:MM (00:00 to 23:59)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _both(self) -> SubscriptionIn:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours need both a start and an end")
        return self


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    time_zone: str | None = Field(default=None, max_length=64)


class SubscriptionView(BaseModel):
    id: int
    event: str
    channel_id: int
    mode: str
    quiet_start: str | None
    quiet_end: str | None
    time_zone: str
    created_at: datetime

    @classmethod
    def of(cls, row: DeliverySubscription) -> SubscriptionView:
        return cls(
            id=row.id,
            event=row.event,
            channel_id=row.channel_id,
            mode=row.mode,
            quiet_start=row.quiet_start,
            quiet_end=row.quiet_end,
            time_zone=row.time_zone,
            created_at=row.created_at,
        )


def events_for(who: Principal) -> list[str]:
    return [e for e in EVENTS if who.is_admin or e not in ADMIN_EVENTS]


def list_subscriptions(session: Session, owner: str) -> list[DeliverySubscription]:
    query = select(DeliverySubscription).where(DeliverySubscription.owner == owner)
    return list(session.scalars(query.order_by(DeliverySubscription.id)))


def _own_channel(session: Session, owner: str, channel_id: int) -> DeliveryChannel:
    channel = session.get(DeliveryChannel, channel_id)
    if channel is None or channel.owner != owner:
        raise NotFound(f"no channel {channel_id}")
    return channel


def own_subscription(session: Session, owner: str, sub_id: int) -> DeliverySubscription:
    row = session.get(DeliverySubscription, sub_id)
    if row is None or row.owner != owner:
        raise NotFound(f"no subscription {sub_id}")
    return row


def add_subscription(
    session: Session, who: Principal, data: SubscriptionIn
) -> DeliverySubscription:
    if data.event not in events_for(who):
        raise InvalidInput(f"unknown event {data.event!r}; one of {', '.join(events_for(who))}")
    _own_channel(session, who.username, data.channel_id)
    exists = session.scalar(
        select(DeliverySubscription.id).where(
            DeliverySubscription.channel_id == data.channel_id,
            DeliverySubscription.event == data.event,
        )
    )
    if exists is not None:
        raise Conflict(f"{data.event} already goes to this channel (subscription {exists})")
    row = DeliverySubscription(
        owner=who.username,
        channel_id=data.channel_id,
        event=data.event,
        mode=data.mode,
        quiet_start=data.quiet_start,
        quiet_end=data.quiet_end,
        time_zone=data.time_zone,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def change_subscription(
    session: Session, owner: str, sub_id: int, patch: SubscriptionPatch
) -> DeliverySubscription:
    row = own_subscription(session, owner, sub_id)
    merged = SubscriptionIn(
        event=row.event,
        channel_id=row.channel_id,
        mode=patch.mode or row.mode,
        quiet_start=patch.quiet_start
        if "quiet_start" in patch.model_fields_set
        else row.quiet_start,
        quiet_end=patch.quiet_end if "quiet_end" in patch.model_fields_set else row.quiet_end,
        time_zone=patch.time_zone or row.time_zone,
    )
    row.mode, row.quiet_start, row.quiet_end = merged.mode, merged.quiet_start, merged.quiet_end
    row.time_zone = merged.time_zone
    session.flush()
    return row


def remove_subscription(session: Session, owner: str, sub_id: int) -> None:
    session.delete(own_subscription(session, owner, sub_id))
