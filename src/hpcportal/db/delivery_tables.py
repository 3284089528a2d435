"""Tables of the delivery area: channels, subscriptions, the outbox and received alerts.

Kept apart so ``models.py`` stays short; ``models.py`` imports this module, which
registers the tables on the shared metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hpcportal.db.base import Base, UtcDateTime

#: POSIX user names are at most 32 characters (as ``models.USERNAME_MAX_LENGTH``).
_USERNAME = 32
#: Long enough for any key a caller builds (event, subject, channel, episode ...),
#: short enough for a unique index on MariaDB's utf8mb4.
IDEMPOTENCY_KEY_MAX_LENGTH = 200
CHANNEL_KINDS = ("email", "slack", "webhook")
OUTBOX_STATES = ("pending", "sending", "sent", "dead")


# --- Delivery channels (services/delivery) ---------------------------------------------
class DeliveryChannel(Base):
    """Where a message can go: an email address, a Slack incoming webhook or a webhook.

    ``owner`` NULL is a site channel (admins configure it; verified on creation); a
    user's own channel is usable only once ``verified_at`` is set (the confirmation code
    or link, whose SHA-256 is ``verify_code_hash``). ``secret`` is the webhook's HMAC
    key sealed with ``services.secret_box`` (context ``delivery_channel:<id>:secret``):
    the database alone does not let anybody forge the portal's signatures.
    """

    __tablename__ = "delivery_channels"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'slack', 'webhook')", name="kind"),
        Index("ix_delivery_channels_owner_kind", "owner", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(_USERNAME))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(2048))  # email address or URL
    secret: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    verify_code_hash: Mapped[str | None] = mapped_column(String(64))
    verify_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- The outbox: every message, written once with its event (services/delivery) -----
class OutboxMessage(Base):
    """One message to one channel, written in the same transaction as its event.

    ``idempotency_key`` is unique: enqueueing the same event twice (two replicas, a
    retried request) stores it once. It is also the message's identity outside: the
    email's Message-ID and the webhook's delivery id derive from it, so a receiver can
    drop the one message a leader change may send twice.

    ``state``: ``pending`` (due at ``next_attempt_at``) -> ``sending`` (claimed by the
    leader whose fencing token is ``claimed_token``) -> ``sent``, or back to
    ``pending`` with a later ``next_attempt_at`` after a failure, or ``dead`` after the
    last attempt (admins resend it). The channel's deletion deletes its messages.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'sending', 'sent', 'dead')", name="state"),
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_recipient_created_at", "recipient", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH), unique=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("delivery_channels.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str | None] = mapped_column(String(_USERNAME))
    event: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_token: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- A person's own choices: subscriptions, channel options, held messages -------------
# (services/delivery/subscriptions.py, routing.py, digest.py; issue 15.2)
SUBSCRIPTION_MODES = ("immediate", "hourly", "daily")
HELD_REASONS = ("digest", "quiet", "rate")


class DeliverySubscription(Base):
    """One rule: this event goes to this channel of its owner.

    ``mode`` immediate sends each event on its own; hourly/daily hold it for the
    digest of the period. ``quiet_start``/``quiet_end`` ("HH:MM" in ``time_zone``,
    either both or neither; start after end spans midnight) hold messages until the
    quiet hours end. No row, no message: nothing reaches a channel unless asked.
    """

    __tablename__ = "delivery_subscriptions"
    __table_args__ = (
        CheckConstraint("mode IN ('immediate', 'hourly', 'daily')", name="mode"),
        UniqueConstraint("channel_id", "event", name="uq_delivery_subscriptions_channel_event"),
        Index("ix_delivery_subscriptions_owner_event", "owner", "event"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(_USERNAME))
    channel_id: Mapped[int] = mapped_column(ForeignKey("delivery_channels.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="immediate")
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeliveryChannelOption(Base):
    """What a person set on their own channel beyond the core's columns.

    ``rate_limit_per_hour``: at most this many messages through the channel in any
    hour; more fold into the next hourly digest (NULL: no limit). ``verify_failures``
    counts wrong confirmation codes since the last one was sent.
    """

    __tablename__ = "delivery_channel_options"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("delivery_channels.id", ondelete="CASCADE"), primary_key=True
    )
    rate_limit_per_hour: Mapped[int | None] = mapped_column(Integer)
    verify_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DeliveryHeld(Base):
    """A message waiting for a digest, the end of quiet hours, or the rate limit.

    ``idempotency_key`` is the key the message would have had in the outbox, so an
    event routed twice is held once. The leader's digest builder folds the items of one
    (channel, ``period_key``) whose ``release_at`` has come into one outbox message
    (key ``digest:<channel>:<period_key>``) and stamps ``folded_at`` in the same
    transaction.
    """

    __tablename__ = "delivery_held"
    __table_args__ = (
        CheckConstraint("reason IN ('digest', 'quiet', 'rate')", name="reason"),
        Index("ix_delivery_held_folded_at_release_at", "folded_at", "release_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH), unique=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("delivery_channels.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str | None] = mapped_column(String(_USERNAME))
    event: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    period_key: Mapped[str] = mapped_column(String(64))
    release_at: Mapped[datetime] = mapped_column(UtcDateTime)
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    folded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
