"""``/settings/notifications``: which job events reach the bell, and beyond the bell
your own channels (email, Slack, webhook), their verification, your subscriptions and
your delivery history.

The page draws everything server-side; its script (``js/notification_settings.js``)
sends each form to the API (``/api/v1/notifications/settings``, ``/channels``,
``/subscriptions``) with the CSRF header every API write carries and reloads, so the
page adds no second way to write anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.db.session import Database
from hpcportal.dependencies import DatabaseDep
from hpcportal.services.delivery import subscriptions as subs
from hpcportal.services.delivery import user_channels
from hpcportal.services.delivery.subscriptions import SubscriptionView
from hpcportal.services.delivery.user_channels import DeliveryHistory, UserChannelView
from hpcportal.services.identity import Principal
from hpcportal.services.notification_settings import (
    DEFAULTS,
    NotificationSettings,
    read_settings,
)
from hpcportal.web.common import PageDep
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

PATH = "/settings/notifications"

#: Each switch's label, in the order the form shows them.
EVENT_LABELS: dict[str, str] = {
    "started": N_("A job starts running"),
    "completed": N_("A job completes"),
    "failed": N_("A job fails"),
    "timed_out": N_("A job reaches its time limit and is stopped"),
    "cancelled": N_("A job is cancelled"),
    "time_limit": N_("A running job nears its time limit"),
}

#: The subscription events (``subscriptions.EVENTS``) as the page names them.
SUBSCRIPTION_LABELS: dict[str, str] = {
    "job_started": N_("Job started"),
    "job_finished": N_("Job completed"),
    "job_failed": N_("Job failed"),
    "job_timed_out": N_("Job timed out"),
    "job_requeued": N_("Job requeued"),
    "job_held": N_("Job held"),
    "session_ready": N_("Interactive session ready"),
    "session_ending": N_("Interactive session ending soon"),
    "idle_gpu": N_("GPUs idle"),
    "disk_alert": N_("Disk alert"),
    "report_ready": N_("Report ready"),
    "admin_alert": N_("Cluster alert (admins)"),
}
KIND_LABELS = {"email": N_("Email"), "slack": N_("Slack webhook"), "webhook": N_("Webhook")}
MODE_LABELS = {
    "immediate": N_("Immediately"),
    "hourly": N_("Hourly digest"),
    "daily": N_("Daily digest"),
}
STATE_LABELS = {
    "pending": N_("Queued"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "dead": N_("Failed"),
}
REASON_LABELS = {
    "digest": N_("Digest"),
    "quiet": N_("Quiet hours"),
    "rate": N_("Rate limit"),
}


@dataclass(frozen=True, slots=True)
class _State:
    switches: NotificationSettings
    channels: list[UserChannelView]
    subscriptions: list[SubscriptionView]
    history: DeliveryHistory


def _read(database: Database, who: Principal) -> _State:
    with database.session() as session:
        return _State(
            read_settings(session, who.username),
            user_channels.list_channels(session, who.username),
            [SubscriptionView.of(r) for r in subs.list_subscriptions(session, who.username)],
            user_channels.history(session, who.username, limit=30),
        )


@router.get(PATH, response_class=HTMLResponse)
async def settings_page(page: PageDep, database: DatabaseDep) -> HTMLResponse:
    who = page.user
    assert who is not None
    state = await run_in_threadpool(_read, database, who)
    names: dict[int, str] = {c.id: c.name for c in state.channels}
    context: dict[str, Any] = {
        "events": [
            (e, label, getattr(state.switches, e), DEFAULTS[e]) for e, label in EVENT_LABELS.items()
        ],
        "channels": state.channels,
        "subscriptions": state.subscriptions,
        "history": state.history,
        "channel_names": names,
        "subscription_events": [(e, SUBSCRIPTION_LABELS[e]) for e in subs.events_for(who)],
        "subscription_labels": SUBSCRIPTION_LABELS,
        "kind_labels": KIND_LABELS,
        "mode_labels": MODE_LABELS,
        "state_labels": STATE_LABELS,
        "reason_labels": REASON_LABELS,
    }
    return page.render("notification_settings.html", page_key="notification-settings", **context)
