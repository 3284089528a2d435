"""Generic webhooks: the message as JSON, signed (``signature``) with the channel's secret.

Body: ``{"id", "event", "recipient", "subject", "text", "html", "payload",
"created_at"}``; ``id`` equals the ``X-Hpcportal-Delivery`` header, the same on every
attempt at this message. A channel without a secret is sent unsigned (the receiver
then cannot tell the portal from anybody else: the settings page says so).
"""

from __future__ import annotations

import json
import time

from hpcportal.config import Settings
from hpcportal.services.delivery import signature
from hpcportal.services.delivery.channels import Destination, Outgoing, http_post
from hpcportal.services.delivery.url_guard import UrlGuard


def body(message: Outgoing) -> bytes:
    document = {
        "id": message.delivery_id,
        "event": message.event,
        "recipient": message.recipient,
        "subject": message.subject,
        "text": message.body_text,
        "html": message.body_html,
        "payload": message.payload,
        "created_at": message.created_at.isoformat(),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    def __init__(self, settings: Settings, guard: UrlGuard) -> None:
        self.settings = settings
        self.guard = guard

    async def send(self, to: Destination, message: Outgoing) -> None:
        data = body(message)
        if to.secret:
            headers = signature.headers(to.secret, message.delivery_id, int(time.time()), data)
        else:
            headers = {signature.DELIVERY_HEADER: message.delivery_id}
        await http_post.post(
            self.guard,
            to.target,
            data,
            headers,
            timeout=self.settings.delivery_send_timeout_seconds,
            ca_file=self.settings.delivery_https_ca_file,
        )
