"""Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat accept the format).

``text`` is the whole message (notifications and clients without blocks show it);
``blocks`` show the subject as a header, the text and, small, the delivery id: incoming
webhooks carry no id of their own, so a person can see a repeat for what it is.
"""

from __future__ import annotations

import json

from hpcportal.config import Settings
from hpcportal.services.delivery import signature
from hpcportal.services.delivery.channels import Destination, Outgoing, http_post
from hpcportal.services.delivery.url_guard import UrlGuard

#: Slack's limits: a header block's text, a section's text.
HEADER_MAX = 150
SECTION_MAX = 3000


def body(message: Outgoing) -> bytes:
    document = {
        "text": f"{message.subject}\n{message.body_text}"[:SECTION_MAX],
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": message.subject[:HEADER_MAX]},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": message.body_text[:SECTION_MAX] or " "},
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"hpcportal {message.event} · {message.delivery_id}"}
                ],
            },
        ],
    }
    return json.dumps(document, ensure_ascii=False).encode()


class SlackSender:
    def __init__(self, settings: Settings, guard: UrlGuard) -> None:
        self.settings = settings
        self.guard = guard

    async def send(self, to: Destination, message: Outgoing) -> None:
        await http_post.post(
            self.guard,
            to.target,
            body(message),
            {signature.DELIVERY_HEADER: message.delivery_id},
            timeout=self.settings.delivery_send_timeout_seconds,
            ca_file=self.settings.delivery_https_ca_file,
        )
