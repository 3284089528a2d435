"""The outbox: every message written once, in the transaction of its event, sent later.

Why an outbox: the event (a job failed, an alert arrived) and "tell somebody" must not
come apart. ``enqueue`` inserts into the *caller's* transaction, so the message exists
exactly when the event does, and the leader's sender (``sender.py``) delivers it after
the commit, with retries. ``idempotency_key`` is unique: the same event enqueued twice
(two replicas, a retried request, a restarted detector) is stored once.

The state changes of a message live here too, as compare-and-set ``UPDATE``s, so the
sender and the admin pages move rows the same way:

    pending --claim--> sending --mark_sent--> sent
                          |---mark_failed--> pending (later) | dead (last attempt)
    dead --resend--> pending

``claim`` and ``mark_*`` run in the sender's fenced transaction (``Leadership.fence``)
and match ``claimed_token``: a deposed leader can neither take a row nor mark one.
A claim also sets ``next_attempt_at`` to when the claim lapses, so a row left
``sending`` by a leader that died is taken again by the next one, but not before the
old leader's send would have timed out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from hpcportal.db.delivery_tables import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    DeliveryChannel,
    OutboxMessage,
)
from hpcportal.db.upsert import insert_if_absent
from hpcportal.errors import Conflict, InvalidInput, NotFound

#: Column sizes (``delivery_tables``): longer subjects and errors are cut, not refused.
SUBJECT_MAX = 300
ERROR_MAX = 2000
STATES = ("pending", "sending", "sent", "dead")


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    session: Session,
    *,
    channel_id: int,
    recipient: str | None,
    event: str,
    idempotency_key: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Add a message for ``channel_id`` unless ``idempotency_key`` exists; True if added.

    Runs in the caller's transaction (no commit here): commit it with the event that
    caused the message. Due at once; the leader's sender picks it up within
    ``delivery_poll_seconds``. Choose a key that names the event and the channel
    (``job-failed:alice:123:channel-7``): it is also the id receivers dedupe by.
    """
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidInput(f"idempotency_key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters")
    at = now or _now()
    row = {
        "idempotency_key": idempotency_key,
        "channel_id": channel_id,
        "recipient": recipient,
        "event": event[:64],
        "subject": subject[:SUBJECT_MAX],
        "body_text": body_text,
        "body_html": body_html,
        "payload": payload or {},
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "last_error": None,
        "claimed_token": None,
        "created_at": at,
        "sent_at": None,
    }
    stmt = insert_if_absent(session, OutboxMessage, row, ["idempotency_key"])
    added = session.scalar(stmt.returning(OutboxMessage.id))
    return added is not None


def resend(session: Session, outbox_id: int, *, now: datetime | None = None) -> OutboxMessage:
    """Put a dead letter back in the queue: due now, its attempts counted from zero.

    Same idempotency key (the receiver still dedupes). Only ``dead`` rows: resending a
    message that is queued or was delivered would send it twice."""
    message = session.get(OutboxMessage, outbox_id)
    if message is None:
        raise NotFound(f"no outbox message {outbox_id}")
    changed = _rowcount(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id, OutboxMessage.state == "dead")
            .values(
                state="pending",
                attempts=0,
                next_attempt_at=now or _now(),
                claimed_token=None,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if changed != 1:
        raise Conflict(f"outbox message {outbox_id} is {message.state}, not dead")
    session.refresh(message)
    return message


@dataclass(frozen=True, slots=True)
class Page:
    """A page of messages, newest first; ``next_before`` continues it (None: the end)."""

    messages: list[OutboxMessage]
    next_before: int | None


def _page(session: Session, query: Any, limit: int, before: int | None) -> Page:
    if before is not None:
        query = query.where(OutboxMessage.id < before)
    rows = list(session.scalars(query.order_by(OutboxMessage.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def history(
    session: Session,
    owner: str,
    *,
    state: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> Page:
    """``owner``'s delivery history: messages addressed to them or sent through one of
    their own channels (never another person's), newest first."""
    own_channels = select(DeliveryChannel.id).where(DeliveryChannel.owner == owner)
    query = select(OutboxMessage).where(
        or_(OutboxMessage.recipient == owner, OutboxMessage.channel_id.in_(own_channels))
    )
    if state is not None:
        query = query.where(OutboxMessage.state == _state(state))
    return _page(session, query, limit, before)


def listing(
    session: Session, *, state: str | None = None, limit: int = 50, before: int | None = None
) -> Page:
    """Every message (admins), newest first, optionally of one state."""
    query = select(OutboxMessage)
    if state is not None:
        query = query.where(OutboxMessage.state == _state(state))
    return _page(session, query, limit, before)


def counts(session: Session) -> dict[str, int]:
    """Messages per state (the admin page's summary)."""
    query = select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
    found = {state: int(count) for state, count in session.execute(query).tuples()}
    return {state: int(found.get(state, 0)) for state in STATES}


def _state(state: str) -> str:
    if state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}")
    return state


# --- the sender's transitions (in its fenced transaction) -----------------------------


def _claim_matches(token: int | None) -> Any:
    return (
        OutboxMessage.claimed_token.is_(None)
        if token is None
        else OutboxMessage.claimed_token == token
    )


def claim(
    session: Session, token: int | None, now: datetime, hold: timedelta
) -> OutboxMessage | None:
    """Take the oldest due message for sending (one: in flight stays one message).

    Due: ``pending`` whose ``next_attempt_at`` has come, or ``sending`` whose claim
    lapsed (its sender died or was deposed mid-send; sent again with the same key).
    Counts the attempt now, so a message that kills its sender still runs out of
    attempts. ``token`` is the claiming leader's fencing token (None: one server)."""
    due = and_(
        OutboxMessage.state.in_(("pending", "sending")), OutboxMessage.next_attempt_at <= now
    )
    oldest = (OutboxMessage.next_attempt_at, OutboxMessage.id)
    candidate = session.scalars(
        select(OutboxMessage).where(due).order_by(*oldest).limit(1),
        execution_options={"populate_existing": True},
    ).first()
    if candidate is None:
        return None
    changed = _rowcount(
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == candidate.id,
                OutboxMessage.state == candidate.state,
                OutboxMessage.attempts == candidate.attempts,
            )
            .values(
                state="sending",
                claimed_token=token,
                attempts=candidate.attempts + 1,
                next_attempt_at=now + hold,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if changed != 1:
        return None
    session.refresh(candidate)
    return candidate


def mark_sent(session: Session, outbox_id: int, token: int | None, now: datetime) -> bool:
    """Delivered: ``sent`` (only if still claimed by ``token``)."""
    return _mark(session, outbox_id, token, state="sent", sent_at=now, last_error=None)


def mark_failed(
    session: Session,
    outbox_id: int,
    token: int | None,
    *,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """Not delivered: due again at ``retry_at``, or ``dead`` when ``retry_at`` is None."""
    if retry_at is None:
        return _mark(session, outbox_id, token, state="dead", last_error=error[:ERROR_MAX])
    return _mark(
        session,
        outbox_id,
        token,
        state="pending",
        next_attempt_at=retry_at,
        last_error=error[:ERROR_MAX],
    )


def _mark(session: Session, outbox_id: int, token: int | None, **values: Any) -> bool:
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == outbox_id,
            OutboxMessage.state == "sending",
            _claim_matches(token),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Wait before attempt ``attempt + 1`` after ``attempt`` failed (1-based).

    Exponential, ``base * 2**(attempt-1)`` capped at ``cap``, with "equal jitter": half
    of it fixed, half random, so retries of many messages after one outage spread out
    but none comes back sooner than half its step."""
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(step / 2 + rand() * step / 2)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)
