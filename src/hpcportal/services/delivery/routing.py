"""Routing: an event becomes outbox rows (or held items) for its owner's subscriptions.

Called in the transaction that stores the event, so the message exists exactly when
the event does. Every bell notification is stored through
``notifications.detector.insert_new`` (job events, Slurm's mail, idle GPUs, disk
alerts, reports, Alertmanager's alerts), which calls ``route_notifications`` for the
rows it inserted: producers need not call anything else. ``route`` is the entry for
an event that has no bell row.

Idempotency: each message's key is the event's own unique key plus the channel
(``job:alice:123:failed:ch7``), so two replicas storing the same event, or a detector
restarted mid-way, enqueue one message per channel. Only verified, enabled channels
of the event's owner receive anything (``admin_alert`` only for admins' rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcportal.db.delivery_tables import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    DeliveryChannel,
    DeliveryChannelOption,
    DeliveryHeld,
    DeliverySubscription,
    OutboxMessage,
)
from hpcportal.db.models import Notification
from hpcportal.db.upsert import insert_if_absent
from hpcportal.services.auth import utcnow
from hpcportal.services.delivery import outbox, texts
from hpcportal.services.delivery.subscriptions import decide

#: (bell kind, bell event) -> subscription event; kinds whose every event maps use "*".
EVENT_OF: dict[tuple[str, str], str] = {
    ("job", "started"): "job_started",
    ("job", "completed"): "job_finished",
    ("job", "failed"): "job_failed",
    ("job", "timed_out"): "job_timed_out",
    ("job", "requeued"): "job_requeued",
    ("job", "held"): "job_held",
    ("job", "gpu_idle"): "idle_gpu",
    ("session", "ready"): "session_ready",
    ("session", "ending"): "session_ending",
    ("disk", "*"): "disk_alert",
    ("report", "report_ready"): "report_ready",
    ("report", "report_failed"): "report_ready",
    ("alert", "*"): "admin_alert",
}


def subscription_event(kind: str, event: str) -> str | None:
    return EVENT_OF.get((kind, event)) or EVENT_OF.get((kind, "*"))


def message_key(event_key: str, channel_id: int) -> str:
    """The outbox key of one event on one channel, at most the column's length."""
    key = f"{event_key}:ch{channel_id}"
    if len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        return key
    digest = hashlib.sha256(event_key.encode()).hexdigest()
    return f"{event_key[:100]}~{digest}:ch{channel_id}"


def notification_key(row: Notification) -> str:
    """The bell row's own unique key as text: (username, job_id, event) for jobs,
    (username, target, episode, event) for the others."""
    if row.job_id is not None:
        return f"{row.kind}:{row.username}:{row.job_id}:{row.event}"
    return f"{row.kind}:{row.username}:{row.target}:{row.episode}:{row.event}"


@dataclass(frozen=True, slots=True)
class Routable:
    """One event to route: whose, which subscription event, its unique key and texts,
    and when it happened (quiet hours and digest periods are decided at that time, not
    at whatever moment the routing runs)."""

    username: str
    event: str
    key: str
    english_body: str
    params: dict[str, Any]
    at: datetime | None = None


def route_notifications(
    session: Session, rows: Sequence[Notification], now: datetime | None = None
) -> int:
    """Route the bell rows just inserted; how many messages were enqueued or held."""
    items = []
    for row in rows:
        event = subscription_event(row.kind, row.event)
        if event is not None:
            items.append(
                Routable(row.username, event, notification_key(row), row.body,
                         dict(row.params or {}), row.created_at)
            )  # fmt: skip
    return route_all(session, items, now)


def route_all(session: Session, items: Sequence[Routable], now: datetime | None = None) -> int:
    """Route several events, asking the database only about owners who subscribed to
    something (one query), so a refresh with a thousand job events and no
    subscriptions costs one query."""
    if not items:
        return 0
    users = sorted({i.username for i in items})
    wanted = set(
        session.execute(
            select(DeliverySubscription.owner, DeliverySubscription.event)
            .where(DeliverySubscription.owner.in_(users))
            .distinct()
        ).tuples()
    )
    done = 0
    for item in items:
        if (item.username, item.event) in wanted:
            done += route(session, username=item.username, event=item.event,
                          params=item.params, key=item.key, english_body=item.english_body,
                          now=now or item.at)  # fmt: skip
    return done


def _matches(
    session: Session, username: str, event: str
) -> list[tuple[DeliverySubscription, DeliveryChannel]]:
    """The owner's subscriptions to ``event`` whose channels may receive (verified, on)."""
    query = (
        select(DeliverySubscription, DeliveryChannel)
        .join(DeliveryChannel, DeliveryChannel.id == DeliverySubscription.channel_id)
        .where(
            DeliverySubscription.owner == username,
            DeliverySubscription.event == event,
            DeliveryChannel.owner == username,
            DeliveryChannel.verified_at.is_not(None),
            DeliveryChannel.enabled.is_(True),
        )
        .order_by(DeliverySubscription.id)
    )
    return [(sub, channel) for sub, channel in session.execute(query).tuples()]


def sent_last_hour(session: Session, channel_id: int, now: datetime) -> int:
    """Messages enqueued for the channel in the hour before ``now`` (rate limit)."""
    query = select(func.count(OutboxMessage.id)).where(
        OutboxMessage.channel_id == channel_id,
        OutboxMessage.created_at > now - timedelta(hours=1),
    )
    return int(session.scalar(query) or 0)


def route(
    session: Session,
    *,
    username: str,
    event: str,
    params: dict[str, Any],
    key: str,
    english_body: str = "",
    now: datetime | None = None,
) -> int:
    """Enqueue (or hold) ``event`` for each of ``username``'s matching subscriptions.

    ``key`` is the event's unique key (same event, same key, on every replica);
    ``english_body`` the sentence the bell shows. Runs in the caller's transaction."""
    at = now or utcnow()
    done = 0
    for sub, channel in _matches(session, username, event):
        text = texts.event_message(event, channel.language, english_body, params)
        msg_key = message_key(key, channel.id)
        payload = {"event": event, "params": params, "key": key}
        option = session.get(DeliveryChannelOption, channel.id)
        limit = option.rate_limit_per_hour if option is not None else None
        used = sent_last_hour(session, channel.id, at) if limit is not None else 0
        hold = decide(sub, at, sent_last_hour=used, limit=limit)
        if hold is None:
            added = outbox.enqueue(
                session,
                channel_id=channel.id,
                recipient=username,
                event=event,
                idempotency_key=msg_key,
                subject=text.subject,
                body_text=text.body_text,
                body_html=text.body_html,
                payload=payload,
                now=at,
            )
        else:
            added = _hold(session, channel.id, username, event, msg_key, hold, text, payload, at)
        done += int(added)
    return done


def _hold(
    session: Session,
    channel_id: int,
    username: str,
    event: str,
    key: str,
    hold: Any,
    text: texts.Text,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
        return False  # sent already (the same event routed before it was held)
    row = {
        "idempotency_key": key,
        "channel_id": channel_id,
        "recipient": username,
        "event": event,
        "reason": hold.reason,
        "period_key": hold.period_key,
        "release_at": hold.release_at,
        "subject": text.subject[:300],
        "body_text": text.body_text,
        "payload": payload,
        "created_at": now,
        "folded_at": None,
    }
    stmt = insert_if_absent(session, DeliveryHeld, row, ["idempotency_key"])
    return session.scalar(stmt.returning(DeliveryHeld.id)) is not None


def pending_for(session: Session, channel_ids: Iterable[int]) -> list[DeliveryHeld]:
    """Held items not folded yet (the page shows them as "waiting")."""
    ids = list(channel_ids)
    if not ids:
        return []
    query = select(DeliveryHeld).where(
        DeliveryHeld.channel_id.in_(ids), DeliveryHeld.folded_at.is_(None)
    )
    return list(session.scalars(query.order_by(DeliveryHeld.id)))
