"""Per-user rate limits on what starts work on the cluster: job submissions and
interactive session launches.

Each action has a limit per minute and per hour (``rate_limit_*`` settings; 0 turns
one off). The counters live in the database (``rate_counters``), so the limits hold
across replicas: a request counts itself in the current fixed window of each length
with ``INSERT ... ON CONFLICT DO NOTHING`` (the window's row; ``INSERT IGNORE`` on
MariaDB, see ``db.upsert``) and one conditional
``UPDATE ... SET count = count + 1 WHERE count < limit``. That update is atomic on
SQLite, PostgreSQL and MariaDB alike, so two replicas can never both take the last slot. The
windows are updated in one transaction, minute before hour, so a request refused
by the hourly limit does not use up a slot of the minute, and two transactions never
wait for each other's rows in opposite order.

Fixed windows (rather than sliding ones) keep this at one row per window; the price
is that a client may do twice the per-minute limit across a minute boundary, which
the hourly limit bounds. Callers count only real work: not dry runs, not replays of
an ``Idempotency-Key`` (``services.submit``), and only after the request was found
valid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import RateCounter
from hpcportal.db.session import Database
from hpcportal.db.upsert import insert_if_absent
from hpcportal.errors import RateLimited
from hpcportal.services.auth import describe_wait
from hpcportal.services.identity import Principal

log = logging.getLogger(__name__)

Action = Literal["job.submit", "session.launch"]

#: What a person is told they did too often.
WHAT: dict[Action, str] = {
    "job.submit": "job submissions",
    "session.launch": "interactive session launches",
}


@dataclass(frozen=True, slots=True)
class Window:
    seconds: int
    limit: int
    name: str  # "minute" | "hour"


def windows(settings: Settings, action: Action) -> list[Window]:
    """The limits that apply to ``action``, shortest window first (0 = no limit)."""
    if action == "job.submit":
        per_minute = settings.rate_limit_jobs_per_minute
        per_hour = settings.rate_limit_jobs_per_hour
    else:
        per_minute = settings.rate_limit_sessions_per_minute
        per_hour = settings.rate_limit_sessions_per_hour
    found = [Window(60, per_minute, "minute"), Window(3600, per_hour, "hour")]
    return [w for w in found if w.limit > 0]


def count(
    database: Database,
    settings: Settings,
    who: Principal,
    action: Action,
    now: datetime | None = None,
) -> None:
    """Count one ``action`` by ``who``, or raise ``RateLimited`` (429, ``Retry-After``)
    without counting anything when a limit is reached. Blocking (a short write)."""
    if who.is_admin and settings.rate_limit_exempt_admins:
        return
    limits = windows(settings, action)
    if not limits:
        return
    moment = now or datetime.now(UTC)
    work = _counter(who.username, action, limits, moment)
    new_window = database.write(work, what="rate limit")
    if new_window:
        _prune(database, moment)


def _counter(
    username: str, action: Action, limits: list[Window], now: datetime
) -> Callable[[Session], bool]:
    epoch = now.timestamp()

    def work(session: Session) -> bool:
        refused: list[tuple[Window, float]] = []
        created = False
        for window in limits:
            index = int(epoch // window.seconds)
            ends = (index + 1) * window.seconds
            key = {
                "username": username,
                "action": action,
                "window_seconds": window.seconds,
                "window_index": index,
            }
            row = {**key, "count": 0, "expires_at": datetime.fromtimestamp(ends, UTC)}
            # RETURNING tells whether this call made the row (rowcount may be -1 here).
            added = session.execute(
                insert_if_absent(session, RateCounter, row, list(key)).returning(
                    RateCounter.window_index
                )
            )
            created |= added.first() is not None
            counted = session.execute(
                update(RateCounter)
                .where(
                    *(getattr(RateCounter, name) == value for name, value in key.items()),
                    RateCounter.count < window.limit,
                )
                .values(count=RateCounter.count + 1)
            )
            if _rowcount(counted) != 1:
                refused.append((window, ends - epoch))
        if refused:
            raise _refusal(action, refused, now)  # the transaction is rolled back
        return created

    return work


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _refusal(action: Action, refused: list[tuple[Window, float]], now: datetime) -> RateLimited:
    """The longest wait among the reached limits, said in words and in ``Retry-After``."""
    window, seconds = max(refused, key=lambda item: item[1])
    wait = max(1, math.ceil(seconds))
    until = datetime.fromtimestamp(now.timestamp() + wait, UTC)
    return RateLimited(
        f"Too many {WHAT[action]}: at most {window.limit} per {window.name}. "
        f"Try again in {describe_wait(wait)} (after {until:%H:%M:%S} UTC).",
        headers={"Retry-After": str(wait)},
    )


def _prune(database: Database, now: datetime) -> None:
    """Drop windows that have ended; once per new window, never failing the request
    (replicas pruning at the same moment may collide, and the next one tries again)."""
    try:
        with database.session() as session:
            session.execute(delete(RateCounter).where(RateCounter.expires_at <= now))
    except SQLAlchemyError as exc:
        log.debug("pruning rate counters failed: %s", exc)
