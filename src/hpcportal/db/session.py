"""Engine and sessions for the portal database (SQLite, PostgreSQL or MariaDB).

SQLite allows one writer at a time. A transaction that has read and then wants to
write cannot wait for the writer ahead of it (SQLite answers "database is locked" at
once, without the busy timeout), so every SQLite write transaction starts with
``BEGIN IMMEDIATE``: it takes the write lock up front, waiting its turn, before it
reads anything. Reads outside a write stay outside any transaction and never wait
(WAL). ``Database.write`` adds a bounded retry for the few writes that must not be
lost to a busy database (a submitted job's id, an audit entry).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prometheus_client import Counter
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from hpcportal.config import Settings
from hpcportal.db.sqlite_file import create_private, sqlite_path

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long SQLite waits for another writer (another worker, or the CLI) before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
#: PostgreSQL's "try the transaction again" codes: serialization failure, deadlock.
_PG_RETRY_CODES = frozenset({"40001", "40P01"})
#: MySQL/MariaDB's: lock wait timeout, deadlock (the error number is ``args[0]``).
_MYSQL_RETRY_ERRNOS = frozenset({1205, 1213})

LOST_WRITES = Counter(
    "hpcportal_lost_writes",
    "Side writes given up after retries (audit entries, a submitted job's id); "
    "the request's own answer stood",
    ["what"],
)


def normalise_url(url: str | URL) -> URL:
    """Pin PostgreSQL to psycopg 3, the only driver we ship.

    ``postgresql://`` would make SQLAlchemy look for psycopg2, and ``postgres://`` (as
    some hosting tools write it) is not a dialect name at all.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("mysql", "mariadb", "mariadb+pymysql"):
        # PyMySQL is the driver we ship; "mysql://" alone would look for mysqlclient.
        parsed = parsed.set(drivername="mysql+pymysql")
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        # The server's default may be latin1 or 3-byte utf8: names and texts are Unicode.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: WAL so readers never block the writer,
    enforced foreign keys (off by default in SQLite), a busy timeout, and
    ``BEGIN IMMEDIATE`` for write transactions.

    pysqlite opens a transaction itself just before the first INSERT, UPDATE or
    DELETE, with ``BEGIN <isolation_level>``; reads before it run in autocommit.
    ``IMMEDIATE`` makes that BEGIN take the write lock at once, waiting up to the
    busy timeout, so a write transaction never has to upgrade a read lock (which
    fails at once when another connection committed meanwhile).
    """
    dbapi_connection.isolation_level = "IMMEDIATE"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _check_failures_are_integrity_errors() -> None:
    """MariaDB reports a failed CHECK constraint as error 4025 (MySQL 8 as 3819), which
    PyMySQL raises as an OperationalError (as if the server had failed); SQLite and
    PostgreSQL raise an IntegrityError, and the portal catches that one. Map both alike
    (PyMySQL's table is process-wide; the portal is its only user here)."""
    import pymysql.err

    for errno in (4025, 3819):
        pymysql.err.error_map[errno] = pymysql.err.IntegrityError


def create_db_engine(url: str | URL) -> Engine:
    """An engine configured for the backend: used by the app and by migrations alike."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "mysql":
        _check_failures_are_integrity_errors()
        # READ COMMITTED as on PostgreSQL: InnoDB's REPEATABLE READ would take gap locks
        # that make concurrent upserts (notifications, rate limits) deadlock needlessly.
        return create_engine(parsed, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    # FastAPI runs sync code in a thread pool, so a connection may move between threads.
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if _is_sqlite_memory(parsed):
        # Each in-memory connection would otherwise be a separate, empty database.
        kwargs["poolclass"] = StaticPool
    path = sqlite_path(parsed)
    if path is not None:
        create_private(path)  # before SQLite creates it with the umask's mode
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _configure_sqlite)
    return engine


class Database:
    """One engine and session factory per process; ``AppServices.database`` holds it."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_db_engine(settings.database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed if the block ends normally, rolled back otherwise.

        Code that must keep a write even when it goes on to raise (a failed login is
        recorded, then refused) calls ``session.commit()`` itself first.
        """
        with self._sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def write(self, work: Callable[[Session], T], *, what: str, attempts: int = 4) -> T:
        """Run ``work`` in a transaction of its own, again if the database was busy.

        For writes that must survive contention (a submitted job's id, an audit
        entry): a transaction refused because another writer held the database
        ("database is locked", a PostgreSQL serialization failure or deadlock) is
        retried from the start, after a short random pause, up to ``attempts``
        times; the last failure is raised.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as session:
                    return work(session)
            except DBAPIError as exc:
                if attempt == attempts or not is_busy(exc):
                    raise
                log.warning("database busy writing %s (attempt %d): %s", what, attempt, exc.orig)
                time.sleep(random.uniform(0.05, 0.2) * attempt)  # noqa: S311 (jitter, not a secret)
        raise AssertionError("unreachable")

    def write_or_log(self, work: Callable[[Session], object], *, what: str, about: str) -> bool:
        """``write`` for a side write that must never change a request's answer.

        A failure after the retries is logged at ERROR with ``about`` and counted in
        ``hpcportal_lost_writes_total{what}``; returns whether the write was stored.
        """
        try:
            self.write(work, what=what)
        except Exception:
            log.exception("LOST %s write after retries (%s)", what, about)
            LOST_WRITES.labels(what).inc()
            return False
        return True

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or in tests before dropping a DB)."""
        self.engine.dispose()


def is_busy(exc: DBAPIError) -> bool:
    """Was the transaction refused only because another writer held the database?"""
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    if type(orig).__module__.startswith("pymysql"):
        args: tuple[object, ...] = getattr(orig, "args", ())
        return bool(args) and args[0] in _MYSQL_RETRY_ERRNOS
    return getattr(orig, "sqlstate", None) in _PG_RETRY_CODES
