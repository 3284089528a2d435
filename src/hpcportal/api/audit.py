"""The audit log, for admins."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from hpcportal.api.params import Moment, PageNumber, PageSize
from hpcportal.db.models import AuditEntry
from hpcportal.dependencies import AdminUser, DbDep, strict_query

router = APIRouter(tags=["audit"])


class AuditItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    username: str
    action: str
    target: str | None
    result: str
    detail: str | None
    address: str | None


class AuditPage(BaseModel):
    items: list[AuditItem]
    total: int
    page: int
    limit: int


@router.get(
    "/audit",
    response_model=AuditPage,
    dependencies=[
        strict_query("user", "action", "result", "target", "since", "until", "page", "limit")
    ],
)
def audit_log(
    _: AdminUser,
    db: DbDep,
    user: str | None = None,
    action: str | None = None,
    result: str | None = None,
    target: str | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    page: PageNumber = 1,
    limit: PageSize = 100,
) -> AuditPage:
    """Every action done through the portal, newest first; ``action`` matches a prefix."""
    query = select(AuditEntry)
    if user:
        query = query.where(AuditEntry.username == user)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    if result:
        query = query.where(AuditEntry.result == result)
    if target:
        query = query.where(AuditEntry.target == target)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at <= until)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return AuditPage(
        items=[AuditItem.model_validate(r) for r in rows], total=total, page=page, limit=limit
    )
