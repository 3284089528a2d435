"""The audit log: every action done through the portal, who did it and how it went.

An entry about an action is written in a transaction of its own (``write``,
``write_outcome``), after the action: the action has happened (a job exists, a file
was deleted) or was refused, and that is the answer the person gets. A busy database
is retried; an entry that still cannot be written is logged at ERROR and counted in
``hpcportal_lost_writes_total{what="audit"}``, never turned into a 500. ``record``
adds an entry to the caller's transaction, for changes that are themselves database
rows (an API token) and must be audited atomically with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.orm import Session

from hpcportal.db.models import AuditEntry
from hpcportal.db.session import Database
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


def outcome(error: BaseException | None) -> tuple[Result, str | None]:
    """The result and detail for an action that ended in ``error`` (or fine when None).

    A 4xx error is the person's request refused; anything else is an error of ours.
    """
    if error is None:
        return "ok", None
    refused = isinstance(error, PortalError) and error.status < 500
    return ("refused" if refused else "error"), getattr(error, "message", str(error))


def record_outcome(
    session: Session,
    who: Principal,
    action: str,
    target: str | None,
    address: str | None,
    error: Exception | None,
) -> AuditEntry:
    """``record`` for an action that ended in ``error`` (or fine when None)."""
    result, detail = outcome(error)
    return record(
        session,
        username=who.username,
        action=action,
        target=target,
        result=result,
        detail=detail,
        address=address,
    )


def write(
    database: Database,
    *,
    username: str,
    action: str,
    target: str | None,
    result: Result,
    detail: str | None = None,
    address: str | None = None,
) -> bool:
    """Write one entry in a transaction of its own; never raises (see the module).

    Blocking: call it in a worker thread. Returns whether the entry was stored.
    """
    return database.write_or_log(
        lambda session: record(
            session,
            username=username,
            action=action,
            target=target,
            result=result,
            detail=detail,
            address=address,
        ),
        what="audit",
        about=f"{action} by {username} on {target or '-'}: {result}",
    )


def write_outcome(
    database: Database,
    who: Principal,
    action: str,
    target: str | None,
    address: str | None,
    error: BaseException | None,
) -> bool:
    """``write`` for an action that ended in ``error`` (or fine when None)."""
    result, detail = outcome(error)
    return write(
        database,
        username=who.username,
        action=action,
        target=target,
        result=result,
        detail=detail,
        address=address,
    )
