"""The admin console's audit view: who did what, why, and which commands ran.

Reads the portal's audit log (``audit_log``: every action, refused or not) filtered by
who, kind (an action prefix: ``admin.``, ``admin.node.``, ``job.``), target (a prefix:
``node:``, ``qos:normal``), outcome (``ok``, ``refused``, ``error``) and time, newest
first, a page at a time. An applied admin change's entry is joined with its
``admin_changes`` row (``plan.apply`` writes ``change N; ...`` as the entry's detail, in
the same transaction), so the page shows its reason, the exact argv that ran, and
whether it was reverted; a refused one keeps Slurm's reason and what had run in its
detail.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select

from hpcportal.db.models import AdminChange, AuditEntry
from hpcportal.db.session import Database
from hpcportal.services.admin.plan import ChangeView, change_view

Outcome = Literal["ok", "refused", "error"]
#: ``plan.apply``'s detail of an applied change starts so.
_CHANGE = re.compile(r"^change (\d+); ")


class AuditFilter(BaseModel):
    """What to list; every field narrows, none lists everything."""

    user: str | None = None
    kind: str | None = None
    target: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRow(BaseModel):
    id: int
    at: datetime
    username: str
    action: str
    target: str | None
    result: str
    detail: str | None
    address: str | None
    #: The applied admin change this entry recorded (its reason, argv, revert state).
    change: ChangeView | None = None


class AuditRows(BaseModel):
    items: list[AuditRow]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def audit_rows(database: Database, where: AuditFilter, page: int, limit: int) -> AuditRows:
    """One page of the audit log, newest first, with admin changes joined (blocking)."""
    query = select(AuditEntry)
    if where.user:
        query = query.where(AuditEntry.username == where.user)
    if where.kind:
        query = query.where(AuditEntry.action.like(_like_prefix(where.kind), escape="\\"))
    if where.target:
        query = query.where(AuditEntry.target.like(_like_prefix(where.target), escape="\\"))
    if where.outcome:
        query = query.where(AuditEntry.result == where.outcome)
    if where.since:
        query = query.where(AuditEntry.at >= where.since)
    if where.until:
        query = query.where(AuditEntry.at <= where.until)
    with database.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .offset((page - 1) * limit)
            .limit(limit)
        ).all()
        ids = {}
        for row in rows:
            found = _CHANGE.match(row.detail or "") if row.action.startswith("admin.") else None
            if found:
                ids[row.id] = int(found.group(1))
        changes = {}
        if ids:
            query_changes = select(AdminChange).where(AdminChange.id.in_(set(ids.values())))
            changes = {c.id: change_view(c) for c in session.scalars(query_changes)}
        items = [
            AuditRow(
                id=row.id,
                at=row.at,
                username=row.username,
                action=row.action,
                target=row.target,
                result=row.result,
                detail=row.detail,
                address=row.address,
                change=changes.get(ids.get(row.id, 0)),
            )
            for row in rows
        ]
    return AuditRows(items=items, total=total, page=page, limit=limit)
