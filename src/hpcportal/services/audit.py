"""The audit log: every action done through the portal, who did it and how it went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.orm import Session

from hpcportal.db.models import AuditEntry
from hpcportal.errors import PortalError
from hpcportal.services.identity import Principal

Result = Literal["ok", "refused", "error"]


def record(
    session: Session,
    *,
    username: str,
    action: str,
    target: str | None,
    result: Result,
    detail: str | None = None,
    address: str | None = None,
) -> AuditEntry:
    """Add one entry to the session; the caller's transaction commits it."""
    entry = AuditEntry(
        at=datetime.now(UTC),
        username=username,
        action=action,
        target=target[:512] if target else None,
        result=result,
        detail=detail[:4000] if detail else None,
        address=address,
    )
    session.add(entry)
    return entry


def record_outcome(
    session: Session,
    who: Principal,
    action: str,
    target: str | None,
    address: str | None,
    error: Exception | None,
) -> AuditEntry:
    """One entry for an action that ended in ``error`` (or fine when None).

    A 4xx error is the person's request refused; anything else is an error of ours.
    """
    result: Result = "ok"
    detail = None
    if error is not None:
        refused = isinstance(error, PortalError) and error.status < 500
        result = "refused" if refused else "error"
        detail = getattr(error, "message", str(error))
    return record(
        session,
        username=who.username,
        action=action,
        target=target,
        result=result,
        detail=detail,
        address=address,
    )
