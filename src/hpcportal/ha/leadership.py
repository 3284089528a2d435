"""Which replica leads the background work, as the rest of the portal sees it.

``Leadership`` renews the database lease (``ha.lease``) every third of its length in
a worker thread and answers, without I/O: ``is_leader()``, ``current_token()``. The
work that must happen once (the Slurm refresh, notification detection, disk alerts,
interactive-session tracking, scheduled backups) asks ``is_leader()`` before it starts
and writes through ``fenced_session()`` (or calls ``fence(session)`` first in its own
transaction), so that a leader paused past its lease cannot write after a takeover.

A leader counts itself leader only until its lease would end measured from *before*
its last renewal was sent, less a margin, so it stops acting before another replica
can take over, even if the database stops answering.

With one server (no Redis configured) ``Leadership.single()`` is always leader and its
fence checks nothing: today's behaviour, no lease row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from prometheus_client import Counter, Gauge
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.ha import lease
from hpcportal.ha.lease import LeadershipLost, LeaseState

log = logging.getLogger(__name__)

T = TypeVar("T")

IS_LEADER = Gauge("hpcportal_leader", "1 while this replica holds the leader lease")
TAKEOVERS = Counter("hpcportal_leader_takeovers", "Times this replica became the leader")

#: A leader stops counting itself leader this share of the lease before it ends.
SAFETY_MARGIN = 0.2

#: Called with True when this replica becomes the leader, False when it stops being it.
Listener = Callable[[bool], None]


def default_replica_id(settings: Settings) -> str:
    """``replica_id``, else host name and process id: unique on one machine even when
    ``serve --port`` (not ``settings.port``) tells replicas apart."""
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


class Leadership:
    """This replica's view of the lease: held or not, with which token."""

    def __init__(
        self,
        database: Database | None,
        *,
        replica_id: str,
        lease_seconds: float,
        elected: bool = True,
    ) -> None:
        self.database = database
        self.replica_id = replica_id
        self.lease_seconds = lease_seconds
        #: False: one server alone, always leader, no lease.
        self.elected = elected and database is not None
        self._token: int | None = None
        self._valid_until = 0.0
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._leading = not self.elected
        self.last_error: str | None = None

    @classmethod
    def single(cls) -> Leadership:
        return cls(None, replica_id="single", lease_seconds=0.0, elected=False)

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> Leadership:
        if not settings.replicated:
            return cls.single()
        return cls(
            database,
            replica_id=default_replica_id(settings),
            lease_seconds=settings.leader_lease_seconds,
        )

    # --- what the rest of the portal asks ----------------------------------------------

    def is_leader(self) -> bool:
        if not self.elected:
            return True
        return self._token is not None and time.monotonic() < self._valid_until

    def current_token(self) -> int | None:
        """The fencing token while leader (``None`` otherwise, and with one server)."""
        return self._token if self.is_leader() else None

    def add_listener(self, listener: Listener) -> None:
        """Hear each change of role (on the event loop); must return quickly."""
        self._listeners.append(listener)

    def fence(self, session: Session) -> None:
        """First statement of a background write: refuse it unless we still lead.

        Raises ``LeadershipLost`` (the caller's ``Database.session`` rolls back)."""
        if not self.elected:
            return
        token = self.current_token()
        if token is None:
            raise LeadershipLost(f"{self.replica_id} does not hold the lease")
        lease.fence(session, token)

    @contextlib.contextmanager
    def fenced_session(self) -> Iterator[Session]:
        """``Database.session()`` whose writes commit only while we lead (blocking:
        use it in a worker thread). With one server, a plain session."""
        if self.database is None:
            raise RuntimeError("fenced_session needs the database")
        with self.database.session() as session:
            self.fence(session)
            yield session

    async def run_if_leader(self, work: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``work`` only on the leader (``None`` elsewhere). Its writes should still
        go through ``fenced_session``: leadership can end while it runs."""
        if not self.is_leader():
            return None
        return await work()

    def state(self) -> LeaseState | None:
        """The lease as stored (blocking; for ``cluster status`` and ``/ready``)."""
        if self.database is None:
            return None
        with self.database.session() as session:
            return lease.read(session)

    # --- the renewal loop --------------------------------------------------------------

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3

    async def start(self) -> None:
        if not self.elected or self._task is not None:
            return
        await self.tick()  # a leader from the first moment if the lease is free
        self._task = asyncio.create_task(self._run(), name="leader-lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        token, self._token = self._token, None
        self._set_leading(False)
        if self.elected and self.database is not None:
            with contextlib.suppress(Exception):
                await run_in_threadpool(self._release, token)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            await self.tick()

    async def tick(self) -> None:
        """Renew (or try to take) the lease once, and tell listeners of a change."""
        sent = time.monotonic()
        try:
            token = await run_in_threadpool(self._acquire, self._token)
            self.last_error = None
        except Exception as exc:  # the database did not answer: keep what we had
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("cannot renew the leader lease: %s", self.last_error)
            self._set_leading(self.is_leader())
            return
        if token is None:
            self._token = None
        else:
            if token != self._token:
                log.info("%s leads with token %d", self.replica_id, token)
            self._token = token
            self._valid_until = sent + self.lease_seconds * (1 - SAFETY_MARGIN)
        self._set_leading(self.is_leader())

    def _acquire(self, token: int | None) -> int | None:
        """Our heartbeat, and the leader lease renewed or tried, in one transaction."""
        assert self.database is not None
        lease_ms = int(self.lease_seconds * 1000)
        with self.database.session() as session:
            lease.heartbeat(session, self.replica_id, lease_ms)
            return lease.acquire(session, self.replica_id, lease_ms, token=token)

    def _release(self, token: int | None) -> None:
        assert self.database is not None
        with self.database.session() as session:
            lease.heartbeat(session, self.replica_id, 0, alive=False)
            if token is not None:
                lease.release(session, self.replica_id, token)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        IS_LEADER.set(1 if leading else 0)
        if leading:
            TAKEOVERS.inc()
        for listener in self._listeners:
            try:
                listener(leading)
            except Exception:
                log.exception("leadership listener %r failed", listener)
