"""Cluster alerts from Alertmanager as admin notifications (``kind`` ``alert``).

Alertmanager posts its webhook (format version 4) to the portal's receiver; each alert
in it becomes one notification per admin and per *status*: ``alert_firing`` when it
fires, ``alert_resolved`` when Alertmanager says it is resolved. Alertmanager repeats
a group (``repeat_interval``, a restart, several Alertmanagers in a cluster each
sending), and every portal replica may receive it: the notifications are inserted
*if absent* under the unique key (username, target, episode, event) with ``target``
``alert:<fingerprint>`` and ``episode`` the alert's ``startsAt`` in Unix seconds, so
each exists once, and an alert that fires again later (a new ``startsAt``) is a new
episode, told again. Only the caller that inserted a row pushes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from hpcportal.services.auth import utcnow
from hpcportal.services.notifications.detector import (
    Delivery,
    deliveries_for,
    insert_new,
    new_row,
)

log = logging.getLogger(__package__)

KIND = "alert"
EVENTS = {"firing": "alert_firing", "resolved": "alert_resolved"}
#: Alertmanager's fingerprint: 16 hex digits.
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
MAX_ALERTS = 1000


class AlertIn(BaseModel):
    """One alert of the webhook (extra fields Alertmanager may add are ignored)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: str = Field(default="", max_length=2048)
    fingerprint: str = Field(pattern=_FINGERPRINT.pattern, min_length=16, max_length=16)


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook body, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(default="", max_length=256)
    groupKey: str = Field(default="", max_length=4096)
    alerts: list[AlertIn] = Field(max_length=MAX_ALERTS)


class ReceivedAlerts(BaseModel):
    """``received``: alerts in the body; ``stored``: notifications stored now."""

    received: int
    stored: int


@dataclass(frozen=True, slots=True)
class Received:
    answer: ReceivedAlerts
    deliveries: list[Delivery]
    #: (admin, event, params) of what this call stored, for routing to channels.
    stored: list[tuple[str, str, dict[str, Any]]]


def describe(alert: AlertIn) -> tuple[str, str, dict[str, Any]]:
    """Title, body and the parameters a front end needs to say the same in its language."""
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    where = alert.labels.get("node") or alert.labels.get("instance") or ""
    if not summary:
        summary = f"{name} on {where}" if where else name
    if alert.status == "firing":
        title, body = f"Alert: {name}", f"{summary}"
    else:
        title, body = f"Resolved: {name}", f"Resolved: {summary}"
    params: dict[str, Any] = {
        "alertname": name,
        "status": alert.status,
        "severity": alert.labels.get("severity"),
        "summary": summary,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "starts_at": alert.startsAt.isoformat(),
        "ends_at": alert.endsAt.isoformat() if alert.endsAt else None,
        "fingerprint": alert.fingerprint,
        "generator_url": alert.generatorURL or None,
        "source": "alertmanager",
    }
    return title[:200], body, params


def receive(
    session: Session,
    webhook: AlertmanagerWebhook,
    admins: Sequence[str],
    now: datetime | None = None,
) -> Received:
    """Store each alert's notification for every admin unless it exists (in the
    caller's transaction); return what this call stored, to push and to route."""
    when = now or utcnow()
    rows: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for alert in webhook.alerts:
        title, body, params = describe(alert)
        event = EVENTS[alert.status]
        target = f"alert:{alert.fingerprint}"
        episode = int(alert.startsAt.timestamp())
        for admin in admins:
            row = new_row(admin, KIND, event, title, body, params, when,
                          target=target, episode=episode)  # fmt: skip
            rows[(admin, target, episode, event)] = row
    ordered = [rows[key] for key in sorted(rows)]
    inserted = insert_new(session, ordered, ["username", "target", "episode", "event"])
    if inserted:
        log.info("stored %d alert notifications from Alertmanager", len(inserted))
    stored = [(n.username, n.event, dict(n.params or {})) for n in inserted]
    answer = ReceivedAlerts(received=len(webhook.alerts), stored=len(inserted))
    return Received(answer, deliveries_for(session, inserted), stored)
