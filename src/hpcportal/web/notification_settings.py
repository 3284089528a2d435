"""``/settings/notifications``: which job events notify you.

The page shows the switches of ``services/notification_settings.py``; its script
(``js/notification_settings.js``) saves them through ``PUT
/api/v1/notifications/settings``, with the CSRF header every API write carries, so
the page adds no second way to write them.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.db.session import Database
from hpcportal.dependencies import DatabaseDep
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


def _read(database: Database, username: str) -> NotificationSettings:
    with database.session() as session:
        return read_settings(session, username)


@router.get(PATH, response_class=HTMLResponse)
async def settings_page(page: PageDep, database: DatabaseDep) -> HTMLResponse:
    who = page.user
    assert who is not None
    current = await run_in_threadpool(_read, database, who.username)
    return page.render(
        "notification_settings.html",
        page_key="notification-settings",
        events=[(e, label, getattr(current, e), DEFAULTS[e]) for e, label in EVENT_LABELS.items()],
    )
