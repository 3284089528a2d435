"""A person's own channels: add, list, verify, test, remove.

A user's channel receives nothing but its confirmation code until it is verified
(the sender refuses other messages to it too). The code is six digits from
``secrets``, stored only as its SHA-256 (``verify_code_hash``), valid for
``VERIFY_MINUTES``; ``VERIFY_ATTEMPTS`` wrong answers void it (ask for a new one).
It goes through the channel itself, via the outbox, bypassing subscriptions: whoever
reads the address or the webhook's receiver proves they own it.

Webhook and Slack URLs pass the site's allow list when saved (``UrlGuard``, the same
check the sender repeats at each send): a URL into the site's network is refused here
with a 422 that says why.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import (
    DeliveryChannel,
    DeliveryChannelOption,
    DeliveryHeld,
    DeliverySubscription,
    OutboxMessage,
)
from hpcportal.errors import Conflict, InvalidInput, NotFound, RateLimited
from hpcportal.services.auth import utcnow
from hpcportal.services.delivery import outbox, texts
from hpcportal.services.delivery.channels import seal_secret
from hpcportal.services.delivery.signature import delivery_id
from hpcportal.services.delivery.site_channels import (
    ChannelView,
    CreatedChannel,
    Kind,
    Language,
    check_target,
)
from hpcportal.services.delivery.url_guard import UrlGuard

VERIFY_EVENT = "channel_verification"
TEST_EVENT = "channel_test"
VERIFY_MINUTES = 30
VERIFY_ATTEMPTS = 5
#: A new code no sooner than this after the last (no mail bombing through the portal).
RESEND_AFTER = timedelta(seconds=60)
MAX_CHANNELS = 20
#: Codes a person may have sent in an hour, over all their channels: adding and
#: removing channels must not turn the portal into a way to mail strangers.
CODES_PER_HOUR = 10


class UserChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    name: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=3, max_length=2048)
    language: Language = "en"
    rate_limit_per_hour: int | None = Field(default=None, ge=1, le=1000)


class UserChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    language: Language | None = None
    enabled: bool | None = None
    rate_limit_per_hour: int | None = Field(default=None, ge=0, le=1000)


class UserChannelView(ChannelView):
    rate_limit_per_hour: int | None = None
    verify_pending: bool = False


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=12)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def view(session: Session, row: DeliveryChannel) -> UserChannelView:
    option = session.get(DeliveryChannelOption, row.id)
    base = ChannelView.of(row).model_dump()
    return UserChannelView(
        **base,
        rate_limit_per_hour=option.rate_limit_per_hour if option else None,
        verify_pending=row.verified_at is None and row.verify_code_hash is not None,
    )


def own_channel(session: Session, owner: str, channel_id: int) -> DeliveryChannel:
    """``owner``'s channel or 404 (another person's channel does not exist for you)."""
    row = session.get(DeliveryChannel, channel_id)
    if row is None or row.owner != owner:
        raise NotFound(f"no channel {channel_id}")
    return row


def list_channels(session: Session, owner: str) -> list[UserChannelView]:
    rows = session.scalars(
        select(DeliveryChannel).where(DeliveryChannel.owner == owner).order_by(DeliveryChannel.id)
    )
    return [view(session, row) for row in rows]


def _option(session: Session, channel_id: int) -> DeliveryChannelOption:
    option = session.get(DeliveryChannelOption, channel_id)
    if option is None:
        option = DeliveryChannelOption(channel_id=channel_id, verify_failures=0)
        session.add(option)
    return option


def add_channel(
    session: Session, settings: Settings, guard: UrlGuard, owner: str, data: UserChannelIn
) -> CreatedChannel:
    """Store the channel unverified and send its first confirmation code."""
    count = len(
        list(session.scalars(select(DeliveryChannel.id).where(DeliveryChannel.owner == owner)))
    )
    if count >= MAX_CHANNELS:
        raise InvalidInput(f"at most {MAX_CHANNELS} channels per person")
    target = check_target(guard, data.kind, data.target)
    now = utcnow()
    row = DeliveryChannel(
        owner=owner,
        kind=data.kind,
        name=data.name.strip(),
        target=target,
        language=data.language,
        enabled=True,
        created_at=now,
    )
    session.add(row)
    session.flush()
    secret = None
    if data.kind == "webhook":
        secret = secrets.token_urlsafe(32)
        row.secret = seal_secret(settings, row.id, secret)
    _option(session, row.id).rate_limit_per_hour = data.rate_limit_per_hour
    send_code(session, owner, row.id, now=now)
    session.flush()
    return CreatedChannel(channel=view(session, row), secret=secret)


def send_code(
    session: Session, owner: str, channel_id: int, *, now: datetime | None = None
) -> None:
    """A new confirmation code through the channel (the old one stops working)."""
    row = own_channel(session, owner, channel_id)
    if row.verified_at is not None:
        raise Conflict("this channel is verified already")
    at = now or utcnow()
    if row.verify_sent_at is not None and at - row.verify_sent_at < RESEND_AFTER:
        raise RateLimited("a code was sent less than a minute ago; wait for it")
    recent = session.scalar(
        select(func.count(OutboxMessage.id)).where(
            OutboxMessage.recipient == owner,
            OutboxMessage.event == VERIFY_EVENT,
            OutboxMessage.created_at > at - timedelta(hours=1),
        )
    )
    if int(recent or 0) >= CODES_PER_HOUR:
        raise RateLimited(f"at most {CODES_PER_HOUR} confirmation codes an hour; try later")
    code = f"{secrets.randbelow(10**6):06d}"
    row.verify_code_hash, row.verify_sent_at = code_hash(code), at
    _option(session, row.id).verify_failures = 0
    text = texts.verification(row.language, code, row.name, VERIFY_MINUTES)
    outbox.enqueue(
        session,
        channel_id=row.id,
        recipient=owner,
        event=VERIFY_EVENT,
        idempotency_key=f"verify:{row.id}:{at:%Y%m%dT%H%M%S.%f}",
        subject=text.subject,
        body_text=text.body_text,
        body_html=text.body_html,
        payload={"event": VERIFY_EVENT, "channel": row.id},
        now=at,
    )


def verify(
    session: Session, owner: str, channel_id: int, code: str, *, now: datetime | None = None
) -> tuple[DeliveryChannel, str | None]:
    """Mark the channel verified when ``code`` is its current code.

    Returns the channel and, for a wrong, expired or used-up code, why not: the caller
    commits the counted failure *before* answering with the error (raising here would
    roll the count back and make the attempt limit void)."""
    row = own_channel(session, owner, channel_id)
    if row.verified_at is not None:
        return row, None
    at = now or utcnow()
    option = _option(session, row.id)
    if row.verify_code_hash is None or row.verify_sent_at is None:
        return row, "no code is pending; ask for a new one"
    if at - row.verify_sent_at > timedelta(minutes=VERIFY_MINUTES):
        return row, "the code has expired; ask for a new one"
    if option.verify_failures >= VERIFY_ATTEMPTS:
        return row, "too many wrong codes; ask for a new one"
    if not hmac.compare_digest(code_hash(code), row.verify_code_hash):
        option.verify_failures += 1
        session.flush()
        left = VERIFY_ATTEMPTS - option.verify_failures
        return row, f"wrong code ({left} attempts left)"
    row.verified_at, row.verify_code_hash = at, None
    option.verify_failures = 0
    session.flush()
    return row, None


def change_channel(
    session: Session, owner: str, channel_id: int, patch: UserChannelPatch
) -> DeliveryChannel:
    row = own_channel(session, owner, channel_id)
    if patch.name is not None:
        row.name = patch.name.strip()
    if patch.language is not None:
        row.language = patch.language
    if patch.enabled is not None:
        row.enabled = patch.enabled
    if "rate_limit_per_hour" in patch.model_fields_set:
        _option(session, row.id).rate_limit_per_hour = patch.rate_limit_per_hour or None
    session.flush()
    return row


def remove_channel(session: Session, owner: str, channel_id: int) -> None:
    """The channel, its subscriptions, held items and messages go (foreign keys cascade)."""
    row = own_channel(session, owner, channel_id)
    for table in (DeliverySubscription, DeliveryHeld, OutboxMessage, DeliveryChannelOption):
        session.execute(delete(table).where(table.channel_id == row.id))
    session.delete(row)


def test_channel(
    session: Session, owner: str, channel_id: int, *, now: datetime | None = None
) -> None:
    """A test message through a verified channel (the page's "Send test" button)."""
    row = own_channel(session, owner, channel_id)
    if row.verified_at is None:
        raise Conflict("verify the channel first")
    at = now or utcnow()
    text = texts.test_message(row.language, row.name)
    outbox.enqueue(
        session,
        channel_id=row.id,
        recipient=owner,
        event=TEST_EVENT,
        idempotency_key=f"test:{row.id}:{at:%Y%m%dT%H%M%S.%f}",
        subject=text.subject,
        body_text=text.body_text,
        body_html=text.body_html,
        payload={"event": TEST_EVENT, "channel": row.id},
        now=at,
    )


# --- The owner's delivery history ---------------------------------------------------------


class DeliveryView(BaseModel):
    """One message to you or through your channel, and how its delivery went."""

    id: int
    delivery_id: str
    channel_id: int
    channel_name: str | None
    channel_kind: str | None
    event: str
    subject: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class WaitingView(BaseModel):
    """A message held for a digest, the end of quiet hours or the rate limit."""

    channel_id: int
    event: str
    subject: str
    reason: str
    release_at: datetime


class DeliveryHistory(BaseModel):
    items: list[DeliveryView]
    waiting: list[WaitingView]
    next_before: int | None


def history(
    session: Session,
    owner: str,
    *,
    state: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> DeliveryHistory:
    """Your messages newest first (never another person's), and what is waiting."""
    page = outbox.history(session, owner, state=state, limit=limit, before=before)
    channels = {
        c.id: c
        for c in session.scalars(
            select(DeliveryChannel).where(
                DeliveryChannel.id.in_({m.channel_id for m in page.messages})
            )
        )
    }
    items = []
    for m in page.messages:
        channel = channels.get(m.channel_id)
        items.append(
            DeliveryView(
                id=m.id,
                delivery_id=delivery_id(m.idempotency_key),
                channel_id=m.channel_id,
                channel_name=channel.name if channel else None,
                channel_kind=channel.kind if channel else None,
                event=m.event,
                subject=m.subject,
                state=m.state,
                attempts=m.attempts,
                last_error=m.last_error,
                created_at=m.created_at,
                sent_at=m.sent_at,
            )
        )
    own = select(DeliveryChannel.id).where(DeliveryChannel.owner == owner)
    held = session.scalars(
        select(DeliveryHeld)
        .where(DeliveryHeld.channel_id.in_(own), DeliveryHeld.folded_at.is_(None))
        .order_by(DeliveryHeld.release_at, DeliveryHeld.id)
        .limit(200)
    )
    waiting = [
        WaitingView(
            channel_id=h.channel_id,
            event=h.event,
            subject=h.subject,
            reason=h.reason,
            release_at=h.release_at,
        )
        for h in held
    ]
    return DeliveryHistory(items=items, waiting=waiting, next_before=page.next_before)
