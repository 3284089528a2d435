"""``/notifications``: your job and disk alert notifications (others' are 404 to you)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel

from hpcportal.api.params import DbId, PageNumber, PageSize
from hpcportal.dependencies import CurrentUser, DbDep, strict_query
from hpcportal.services import notifications as service
from hpcportal.services.notification_settings import (
    NotificationSettings,
    NotificationSettingsChange,
    change_settings,
    read_settings,
)
from hpcportal.services.notifications import (
    MAX_PAGE_SIZE,
    NotificationOut,
    NotificationPage,
    UnreadCount,
)

router = APIRouter(prefix="/notifications", tags=["notifications"])

NotificationId = Annotated[DbId, Path()]


class ReadAll(BaseModel):
    updated: int
    unread: int


@router.get(
    "",
    response_model=NotificationPage,
    dependencies=[strict_query("unread", "page", "limit")],
)
def list_notifications(
    who: CurrentUser,
    db: DbDep,
    unread: bool | None = None,
    page: PageNumber = 1,
    limit: Annotated[PageSize, Query(le=MAX_PAGE_SIZE)] = 50,
) -> NotificationPage:
    """Your notifications, newest first; ``unread=true`` or ``false`` filters."""
    return service.list_notifications(db, who, unread=unread, page=page, limit=limit)


@router.get("/unread-count", response_model=UnreadCount, dependencies=[strict_query()])
def unread_count(who: CurrentUser, db: DbDep) -> UnreadCount:
    return UnreadCount(unread=service.unread_count(db, who.username))


@router.post("/read-all", response_model=ReadAll, dependencies=[strict_query()])
def read_all(who: CurrentUser, db: DbDep) -> ReadAll:
    """Mark all your notifications read."""
    updated = service.mark_all_read(db, who)
    return ReadAll(updated=updated, unread=service.unread_count(db, who.username))


@router.get("/settings", response_model=NotificationSettings, dependencies=[strict_query()])
def get_settings(who: CurrentUser, db: DbDep) -> NotificationSettings:
    """Which job events notify you; ``started`` is off unless you switch it on."""
    return read_settings(db, who.username)


@router.put("/settings", response_model=NotificationSettings, dependencies=[strict_query()])
def put_settings(
    change: NotificationSettingsChange, who: CurrentUser, db: DbDep
) -> NotificationSettings:
    """Switch job events on or off for you (those left out keep their setting); applies
    from the next job event on."""
    return change_settings(db, who.username, change)


@router.post(
    "/{notification_id}/read", response_model=NotificationOut, dependencies=[strict_query()]
)
def read_one(notification_id: NotificationId, who: CurrentUser, db: DbDep) -> NotificationOut:
    return service.mark_read(db, who, notification_id)


@router.delete(
    "/{notification_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[strict_query()]
)
def delete_one(notification_id: NotificationId, who: CurrentUser, db: DbDep) -> None:
    service.delete_notification(db, who, notification_id)
