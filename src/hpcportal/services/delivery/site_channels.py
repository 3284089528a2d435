"""Site channels (admins) and the outbox as the admin pages and API show it.

A site channel has no owner and is verified when created: admins vouch for it. Its
URL passes the same allow list as a user's (``UrlGuard``; checked again at each send).
A webhook's HMAC secret is made here when the admin gives none, shown once in the
answer and stored sealed (``channels.seal_secret``).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from hpcportal.errors import InvalidInput, NotFound
from hpcportal.services.delivery import outbox
from hpcportal.services.delivery.channels import seal_secret
from hpcportal.services.delivery.signature import delivery_id
from hpcportal.services.delivery.url_guard import UrlGuard, UrlRefused

Kind = Literal["email", "slack", "webhook"]
Language = Literal["en", "ko"]
#: One address, no display name: what SMTP's RCPT TO takes.
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$")


class SiteChannelIn(BaseModel):
    """A new site channel. ``secret``: a webhook's HMAC key (none given: one is made)."""

    model_config = {"extra": "forbid"}

    kind: Kind
    name: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=3, max_length=2048)
    language: Language = "en"
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    enabled: bool = True


class SiteChannelPatch(BaseModel):
    model_config = {"extra": "forbid"}

    name: str | None = Field(default=None, min_length=1, max_length=100)
    target: str | None = Field(default=None, min_length=3, max_length=2048)
    language: Language | None = None
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    enabled: bool | None = None


class ChannelView(BaseModel):
    id: int
    owner: str | None
    kind: str
    name: str
    target: str
    language: str
    enabled: bool
    verified: bool
    signed: bool
    created_at: datetime

    @classmethod
    def of(cls, row: DeliveryChannel) -> ChannelView:
        return cls(
            id=row.id,
            owner=row.owner,
            kind=row.kind,
            name=row.name,
            target=row.target,
            language=row.language,
            enabled=row.enabled,
            verified=row.verified_at is not None,
            signed=row.secret is not None,
            created_at=row.created_at,
        )


class CreatedChannel(BaseModel):
    """The new channel and, once, its webhook secret (receivers need it to verify)."""

    channel: ChannelView
    secret: str | None


def check_target(guard: UrlGuard, kind: str, target: str) -> str:
    """The target as stored, or ``InvalidInput`` saying why not (blocking: DNS)."""
    target = target.strip()
    if kind == "email":
        if not EMAIL_RE.match(target):
            raise InvalidInput(f"{target!r} is not an email address")
        return target
    try:
        guard.check(target)
    except UrlRefused as exc:
        raise InvalidInput(f"This URL is not allowed: {exc}") from exc
    return target


def site_channels(session: Session) -> list[ChannelView]:
    rows = session.scalars(
        select(DeliveryChannel)
        .where(DeliveryChannel.owner.is_(None))
        .order_by(DeliveryChannel.kind, DeliveryChannel.name, DeliveryChannel.id)
    )
    return [ChannelView.of(row) for row in rows]


def create(
    session: Session, settings: Settings, guard: UrlGuard, data: SiteChannelIn
) -> CreatedChannel:
    target = check_target(guard, data.kind, data.target)
    if data.kind != "webhook" and data.secret is not None:
        raise InvalidInput("only a webhook channel has a secret")
    now = datetime.now(UTC)
    row = DeliveryChannel(
        owner=None,
        kind=data.kind,
        name=data.name.strip(),
        target=target,
        language=data.language,
        verified_at=now,
        enabled=data.enabled,
        created_at=now,
    )
    session.add(row)
    session.flush()
    secret = None
    if data.kind == "webhook":
        secret = data.secret or secrets.token_urlsafe(32)
        row.secret = seal_secret(settings, row.id, secret)
    session.flush()
    return CreatedChannel(channel=ChannelView.of(row), secret=secret)


def _site_channel(session: Session, channel_id: int) -> DeliveryChannel:
    row = session.get(DeliveryChannel, channel_id)
    if row is None or row.owner is not None:
        raise NotFound(f"no site channel {channel_id}")
    return row


def update(
    session: Session,
    settings: Settings,
    guard: UrlGuard,
    channel_id: int,
    data: SiteChannelPatch,
) -> ChannelView:
    row = _site_channel(session, channel_id)
    if data.target is not None:
        row.target = check_target(guard, row.kind, data.target)
    if data.name is not None:
        row.name = data.name.strip()
    if data.language is not None:
        row.language = data.language
    if data.enabled is not None:
        row.enabled = data.enabled
    if data.secret is not None:
        if row.kind != "webhook":
            raise InvalidInput("only a webhook channel has a secret")
        row.secret = seal_secret(settings, row.id, data.secret)
    session.flush()
    return ChannelView.of(row)


def delete(session: Session, channel_id: int) -> None:
    """Delete a site channel and, with it, its messages (history included)."""
    session.delete(_site_channel(session, channel_id))
    session.flush()


# --- the outbox as admins see it ---------------------------------------------------------


class OutboxView(BaseModel):
    id: int
    delivery_id: str
    idempotency_key: str
    channel_id: int
    channel_kind: str | None
    channel_name: str | None
    channel_owner: str | None
    recipient: str | None
    event: str
    subject: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class OutboxPage(BaseModel):
    counts: dict[str, int]
    items: list[OutboxView]
    next_before: int | None


def _views(session: Session, rows: list[OutboxMessage]) -> list[OutboxView]:
    ids = {row.channel_id for row in rows}
    channels = {
        c.id: c for c in session.scalars(select(DeliveryChannel).where(DeliveryChannel.id.in_(ids)))
    }
    views = []
    for row in rows:
        channel = channels.get(row.channel_id)
        views.append(
            OutboxView(
                id=row.id,
                delivery_id=delivery_id(row.idempotency_key),
                idempotency_key=row.idempotency_key,
                channel_id=row.channel_id,
                channel_kind=channel.kind if channel else None,
                channel_name=channel.name if channel else None,
                channel_owner=channel.owner if channel else None,
                recipient=row.recipient,
                event=row.event,
                subject=row.subject,
                state=row.state,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                last_error=row.last_error,
                created_at=row.created_at,
                sent_at=row.sent_at,
            )
        )
    return views


def outbox_page(
    session: Session, *, state: str | None = None, limit: int = 50, before: int | None = None
) -> OutboxPage:
    page = outbox.listing(session, state=state, limit=limit, before=before)
    return OutboxPage(
        counts=outbox.counts(session),
        items=_views(session, page.messages),
        next_before=page.next_before,
    )


def resend(session: Session, outbox_id: int) -> OutboxView:
    row = outbox.resend(session, outbox_id)
    return _views(session, [row])[0]
