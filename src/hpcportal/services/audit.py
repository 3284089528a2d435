"""The audit log: every action done through the portal, who did it and how it went.

One style everywhere: the caller describes the action as an ``Event`` (usually
``Event.of(who, action, target, address, error)``, where ``error`` is what the action
raised, or None when it went fine) and hands it to one of two sinks:

- ``log`` (async; ``write`` is its blocking form) writes it in a transaction of its
  own, after the action: the action has happened (a job exists, a file was deleted) or
  was refused, and that is the answer the person gets. A busy database is retried; an
  entry that still cannot be written is logged at ERROR and counted in
  ``hpcportal_lost_writes_total{what="audit"}``, never turned into a 500.
- ``add`` puts it into the caller's transaction, for changes that are themselves
  database rows (an API token, a template) and must be audited atomically with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from anyio import to_thread
from sqlalchemy.orm import Session

from hpcportal.db.models import AuditEntry
from hpcportal.db.session import Database
from hpcportal.errors import PortalError
from hpcportal.services.identity import Principal

Result = Literal["ok", "refused", "error"]


def outcome(error: BaseException | None) -> tuple[Result, str | None]:
    """The result and detail for an action that ended in ``error`` (or fine when None).

    A 4xx error is the person's request refused; anything else is an error of ours.
    """
    if error is None:
        return "ok", None
    refused = isinstance(error, PortalError) and error.status < 500
    return ("refused" if refused else "error"), getattr(error, "message", str(error))


@dataclass(frozen=True)
class Event:
    """One action to audit: who did what to which target, from where, and how it went."""

    username: str
    action: str
    target: str | None = None
    address: str | None = None
    result: Result = "ok"
    detail: str | None = None

    @classmethod
    def of(
        cls,
        who: Principal | str,
        action: str,
        target: str | None,
        address: str | None,
        error: BaseException | None = None,
        detail: str | None = None,
    ) -> Event:
        """The event of an action that ended in ``error`` (or fine when None); an
        error's message follows ``detail`` when both are given."""
        result, problem = outcome(error)
        if detail and problem:
            detail = f"{detail}: {problem}"
        username = who if isinstance(who, str) else who.username
        return cls(username, action, target, address, result, detail or problem)

    def row(self) -> AuditEntry:
        return AuditEntry(
            at=datetime.now(UTC),
            username=self.username,
            action=self.action,
            target=self.target[:512] if self.target else None,
            result=self.result,
            detail=self.detail[:4000] if self.detail else None,
            address=self.address,
        )


def add(session: Session, event: Event) -> AuditEntry:
    """Add the entry to the session; the caller's transaction commits it."""
    entry = event.row()
    session.add(entry)
    return entry


def write(database: Database, event: Event) -> bool:
    """Write the entry in a transaction of its own; never raises (see the module).

    Blocking: async code calls ``log``. Returns whether the entry was stored.
    """
    return database.write_or_log(
        lambda session: add(session, event),
        what="audit",
        about=f"{event.action} by {event.username} on {event.target or '-'}: {event.result}",
    )


async def log(database: Database, event: Event) -> bool:
    """``write`` in a worker thread, so a busy database never blocks the event loop."""
    return await to_thread.run_sync(write, database, event)
