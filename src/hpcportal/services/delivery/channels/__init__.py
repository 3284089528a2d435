"""One sender per channel kind, behind one call: ``Channels.send(channel, message)``.

Each kind lives in its own module (``email``, ``slack``, ``webhook``); this module holds
what they share: the message as it leaves the outbox, the channel as a sender needs it
(its webhook secret opened), and ``DeliveryFailed``, whose ``permanent`` flag tells the
sender not to try again (a refused address, a URL outside the allow list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from hpcportal.services.delivery.signature import delivery_id
from hpcportal.services.delivery.url_guard import Resolver, UrlGuard, system_resolver
from hpcportal.services.secret_box import box_for


class DeliveryFailed(Exception):
    """A send did not get through; ``permanent``: trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as it leaves the outbox (plain values: no session behind it)."""

    delivery_id: str
    event: str
    recipient: str | None
    subject: str
    body_text: str
    body_html: str | None
    created_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: OutboxMessage) -> Outgoing:
        return cls(
            delivery_id=delivery_id(row.idempotency_key),
            event=row.event,
            recipient=row.recipient,
            subject=row.subject,
            body_text=row.body_text,
            body_html=row.body_html,
            created_at=row.created_at,
            payload=dict(row.payload or {}),
        )


@dataclass(frozen=True, slots=True)
class Destination:
    """A channel as its sender needs it; ``secret`` opened (webhooks), else None."""

    id: int
    kind: str
    target: str
    language: str
    secret: str | None = None


def secret_context(channel_id: int) -> str:
    """Where a channel's sealed secret belongs (``SecretBox`` associated data)."""
    return f"delivery_channel:{channel_id}:secret"


def seal_secret(settings: Settings, channel_id: int, secret: str) -> str:
    """``secret`` sealed for ``delivery_channels.secret`` of ``channel_id`` (flush the
    new channel first to learn its id)."""
    return box_for(settings.secret_key_path).seal(secret, secret_context(channel_id))


def open_secret(settings: Settings, channel: DeliveryChannel) -> str | None:
    if channel.secret is None:
        return None
    return box_for(settings.secret_key_path).open(channel.secret, secret_context(channel.id))


def destination(settings: Settings, channel: DeliveryChannel) -> Destination:
    return Destination(
        channel.id, channel.kind, channel.target, channel.language, open_secret(settings, channel)
    )


class Channels:
    """Sends a message to a destination of any kind."""

    def __init__(self, settings: Settings, resolve: Resolver = system_resolver) -> None:
        from hpcportal.services.delivery.channels import mail, slack, webhook

        self.settings = settings
        self.guard = UrlGuard.from_settings(settings, resolve)
        self._email = mail.EmailSender(settings)
        self._slack = slack.SlackSender(settings, self.guard)
        self._webhook = webhook.WebhookSender(settings, self.guard)

    async def send(self, to: Destination, message: Outgoing) -> None:
        """Deliver, or raise ``DeliveryFailed``."""
        if to.kind == "email":
            await self._email.send(to, message)
        elif to.kind == "slack":
            await self._slack.send(to, message)
        elif to.kind == "webhook":
            await self._webhook.send(to, message)
        else:
            raise DeliveryFailed(f"unknown channel kind {to.kind!r}", permanent=True)
