"""Cluster alerts from Alertmanager (issue 15.5): one admin notification per alert
fingerprint, episode and status, whatever Alertmanager repeats; the receiver wants its
bearer token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from hpcportal.api import alert_receiver
from hpcportal.config import Settings
from hpcportal.db.models import Notification
from hpcportal.db.session import Database
from hpcportal.errors import install_error_handlers
from hpcportal.services.notifications import cluster_alerts
from tests.app_services import bare_app

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
ADMINS = ["carol", "erin"]


def webhook(status: str, starts: str = "2026-12-03T09:59:00Z", fp: str = "0123456789abcdef",
            node: str = "node002") -> dict[str, Any]:  # fmt: skip
    """Alertmanager's body (version 4), as it posts to a webhook receiver."""
    alert = {
        "status": status,
        "labels": {
            "alertname": "NodeDown",
            "severity": "critical",
            "node": node,
            "instance": node,
            "job": "node",
        },
        "annotations": {"summary": f"Node {node} is down"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-03T10:01:00Z",
        "generatorURL": "http://127.0.0.1:19000/graph?g0.expr=up",
        "fingerprint": fp,
    }
    return {"receiver": "hpcportal", "status": status, "alerts": [alert], "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0}  # fmt: skip


def receive(database: Database, body: dict[str, Any]) -> cluster_alerts.Received:
    parsed = cluster_alerts.AlertmanagerWebhook.model_validate(body)
    with database.session() as session:
        return cluster_alerts.receive(session, parsed, ADMINS, NOW)


def rows(database: Database) -> list[tuple[str, str, str | None, str]]:
    with database.session() as session:
        found = session.scalars(select(Notification).order_by(Notification.id)).all()
        return [(n.username, n.kind, n.target, n.event) for n in found]


def test_firing_then_resolved_is_two_per_admin_and_repeats_add_nothing(
    database: Database,
) -> None:
    first = receive(database, webhook("firing"))
    assert first.answer.stored == 2 and {d.username for d in first.deliveries} == set(ADMINS)
    assert first.deliveries[0].notification.title == "Alert: NodeDown"
    assert receive(database, webhook("firing")).answer.stored == 0  # repeat_interval, replicas
    resolved = receive(database, webhook("resolved"))
    assert resolved.answer.stored == 2
    assert resolved.deliveries[0].notification.params["status"] == "resolved"
    assert receive(database, webhook("resolved")).answer.stored == 0
    assert sorted(rows(database)) == sorted(
        (admin, "alert", "alert:0123456789abcdef", event)
        for admin in ADMINS
        for event in ("alert_firing", "alert_resolved")
    )
    # The same alert firing again later is a new episode, told again.
    again = receive(database, webhook("firing", starts="2026-12-03T11:00:00Z"))
    assert again.answer.stored == 2


def test_the_receiver_wants_the_token_and_the_format(
    tmp_path: Path, db_settings: Settings, database: Database
) -> None:
    token = tmp_path / "am.token"
    token.write_text("am-token\n")
    settings = db_settings.model_copy(update={"alertmanager_token_file": token})
    app = bare_app(settings, database=database)
    install_error_handlers(app)
    app.include_router(alert_receiver.router, prefix="/api/v1")
    url = "/api/v1/alerts/alertmanager"
    with TestClient(app) as client:
        assert client.post(url, json=webhook("firing")).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert client.post(url, json=webhook("firing"), headers=bad).status_code == 401
        good = {"Authorization": "Bearer am-token"}
        broken = webhook("firing")
        broken["alerts"][0]["fingerprint"] = "not hex"
        assert client.post(url, json=broken, headers=good).status_code == 422
        answer = client.post(url, json=webhook("firing"), headers=good)
    assert answer.status_code == 200, answer.text
    assert answer.json()["received"] == 1
