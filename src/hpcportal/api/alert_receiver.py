"""The Alertmanager receiver: cluster alerts become admin notifications
(``services/notifications/cluster_alerts.py``). Alertmanager authenticates with the
bearer token of ``alertmanager_token_file`` (its ``http_config`` credentials file)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from hpcportal.composition import services_of
from hpcportal.dependencies import SettingsDep, strict_query
from hpcportal.services.disk_alerts.recipients import admin_usernames
from hpcportal.services.notifications import cluster_alerts
from hpcportal.services.notifications.shared_secret import require_bearer

router = APIRouter(prefix="/alerts/alertmanager", tags=["alerts"])


@router.post("", response_model=cluster_alerts.ReceivedAlerts, dependencies=[strict_query()])
async def receive_alerts(
    body: cluster_alerts.AlertmanagerWebhook,
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> cluster_alerts.ReceivedAlerts:
    """Alertmanager's webhook (version 4): each alert, firing or resolved, told once to
    every admin, however often Alertmanager repeats it and whichever replica hears it."""
    require_bearer(settings.alertmanager_token_file, authorization, "alertmanager_token_file")
    services = services_of(request)
    admins = admin_usernames(settings)

    def store() -> cluster_alerts.Received:
        with services.database.session() as session:
            return cluster_alerts.receive(session, body, admins)

    received = await run_in_threadpool(store)
    services.live.deliver(received.deliveries)
    return received.answer
