"""The leader lease in the portal's own database, and the fence every background write
checks.

Why the database and not Redis or an advisory lock: the fence must be checked *in the
same transaction as the write it guards*. A token kept in Redis can only be compared
before the write, and a paused leader can wake up between the comparison and its
commit; a PostgreSQL advisory lock lives with one connection and exists neither on
SQLite nor on MariaDB/Galera. A row in the portal's database works on all three
engines, and ``fence`` is one guarded ``UPDATE`` on that row in the write's own
transaction: it succeeds only while the token is still ours, and it holds the row lock
until the commit, so a takeover (an ``UPDATE`` of the same row) is ordered after every
write the old leader made, never between its check and its commit.

Expiry uses the replicas' wall clocks (milliseconds since the epoch): replicas must
keep their clocks in sync (NTP) to well under the lease time. A replica whose clock ran
ahead could take over early; the fence still keeps the two leaders' writes apart.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpcportal.db.models import LeaderLease

#: The one lease the portal uses today; more names can share the table later.
LEADER = "leader"
#: Each replica's own row (``replica:<id>``): alive while it runs (``heartbeat``).
HEARTBEAT_PREFIX = "replica:"


class LeadershipLost(RuntimeError):
    """The fence refused a write: another replica holds the lease (a newer token)."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease as stored: who holds it, with which token, until when."""

    holder: str
    token: int
    expires_at_ms: int
    acquired_at_ms: int

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms <= now_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def read(session: Session, name: str = LEADER) -> LeaseState | None:
    row = session.get(LeaderLease, name)
    if row is None:
        return None
    return LeaseState(row.holder, row.token, row.expires_at_ms, row.acquired_at_ms)


def acquire(
    session: Session,
    holder: str,
    lease_ms: int,
    *,
    token: int | None = None,
    name: str = LEADER,
    clock_ms: int | None = None,
) -> int | None:
    """Renew our lease (``token``: the one we hold) or take an expired one over.

    Returns the token we now hold, or ``None`` if another replica holds a live lease
    (or took ours over). A takeover adds one to the token; a renewal keeps it. The
    caller commits (``Database.session`` does).
    """
    now = clock_ms if clock_ms is not None else now_ms()
    if token is not None:
        renewed = session.execute(
            update(LeaderLease)
            .where(
                LeaderLease.name == name,
                LeaderLease.holder == holder,
                LeaderLease.token == token,
            )
            .values(expires_at_ms=now + lease_ms)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(renewed) == 1:
            return token
    taken = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name, LeaderLease.expires_at_ms <= now)
        .values(
            holder=holder,
            token=LeaderLease.token + 1,
            expires_at_ms=now + lease_ms,
            acquired_at_ms=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(taken) == 1:
        won: int = session.scalars(select(LeaderLease.token).where(LeaderLease.name == name)).one()
        return won
    if session.get(LeaderLease, name) is not None:
        return None
    try:
        with session.begin_nested():
            session.execute(
                insert(LeaderLease).values(
                    name=name, holder=holder, token=1, expires_at_ms=now + lease_ms,
                    acquired_at_ms=now,
                )
            )  # fmt: skip
    except IntegrityError:  # another replica inserted the first lease just now
        return None
    return 1


def release(session: Session, holder: str, token: int, *, name: str = LEADER) -> bool:
    """Give the lease up at shutdown, so another replica need not wait for it to expire."""
    result = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name, LeaderLease.holder == holder, LeaderLease.token == token)
        .values(expires_at_ms=0)
        .execution_options(synchronize_session=False)
    )
    return bool(_rowcount(result) == 1)


def heartbeat(session: Session, replica_id: str, lease_ms: int, *, alive: bool = True) -> None:
    """Keep this replica's own row alive for ``lease_ms`` (``alive=False``: end it now).

    Other replicas read it to know that this one still runs: a submission whose attempt
    this replica ran (``submissions.owner``) is taken over once the row has expired.
    """
    name = HEARTBEAT_PREFIX + replica_id
    now = now_ms()
    until = now + lease_ms if alive else 0
    result = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name)
        .values(holder=replica_id, expires_at_ms=until)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) == 1 or not alive:
        return
    with contextlib.suppress(IntegrityError), session.begin_nested():
        session.execute(
            insert(LeaderLease).values(
                name=name, holder=replica_id, token=0, expires_at_ms=until, acquired_at_ms=now
            )
        )


def fence(session: Session, token: int, *, name: str = LEADER) -> None:
    """Refuse this transaction's writes unless ``token`` is still the lease's token.

    One ``UPDATE ... WHERE token = :token`` that changes nothing but locks the row until
    the commit (``BEGIN IMMEDIATE`` on SQLite serializes all writers anyway): call it
    first in the transaction of a background write. Raises ``LeadershipLost``, and the
    caller's ``Database.session`` rolls the whole transaction back.
    """
    result = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name, LeaderLease.token == token)
        .values(token=LeaderLease.token)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        raise LeadershipLost(f"the lease {name!r} has a newer token than {token}")


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (MariaDB's driver is told to count matched, not changed,
    rows by SQLAlchemy's ``FOUND_ROWS`` flag, so a no-op fence counts too)."""
    return int(cast(CursorResult[Any], result).rowcount)
