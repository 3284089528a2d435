"""A person's own notifications: count, list, mark read, delete."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hpcportal.db.models import Notification
from hpcportal.errors import NotFound
from hpcportal.services.auth import utcnow
from hpcportal.services.identity import Principal
from hpcportal.services.notifications.model import NotificationOut, NotificationPage

# --- Reading and managing one's own notifications -------------------------------------


def unread_count(session: Session, username: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.username == username, Notification.read_at.is_(None))
        )
        or 0
    )


def list_notifications(
    session: Session, who: Principal, *, unread: bool | None, page: int, limit: int
) -> NotificationPage:
    """The user's notifications, newest first; ``unread`` filters on read state."""
    where = [Notification.username == who.username]
    if unread is True:
        where.append(Notification.read_at.is_(None))
    elif unread is False:
        where.append(Notification.read_at.is_not(None))
    total = session.scalar(select(func.count()).select_from(Notification).where(*where)) or 0
    rows = session.scalars(
        select(Notification)
        .where(*where)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return NotificationPage(
        items=[NotificationOut.of(r) for r in rows],
        total=int(total),
        page=page,
        limit=limit,
        unread=unread_count(session, who.username),
    )


def _own(session: Session, who: Principal, notification_id: int) -> Notification:
    """The user's notification; anyone else's is "not found", so ids reveal nothing."""
    row = session.get(Notification, notification_id)
    if row is None or row.username != who.username:
        raise NotFound(f"No notification {notification_id}.")
    return row


def mark_read(
    session: Session, who: Principal, notification_id: int, now: datetime | None = None
) -> NotificationOut:
    row = _own(session, who, notification_id)
    if row.read_at is None:
        row.read_at = now or utcnow()
    session.flush()
    return NotificationOut.of(row)


def mark_all_read(session: Session, who: Principal, now: datetime | None = None) -> int:
    """Mark every unread notification of the user read; returns how many were."""
    result = session.execute(
        update(Notification)
        .where(Notification.username == who.username, Notification.read_at.is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_notification(session: Session, who: Principal, notification_id: int) -> None:
    session.delete(_own(session, who, notification_id))
