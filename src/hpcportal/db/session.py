"""Engine and sessions for the portal database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from hpcportal.config import Settings

#: How long SQLite waits for another writer (another worker, or the CLI) before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalise_url(url: str | URL) -> URL:
    """Pin PostgreSQL to psycopg 3, the only driver we ship.

    ``postgresql://`` would make SQLAlchemy look for psycopg2, and ``postgres://`` (as
    some hosting tools write it) is not a dialect name at all.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: WAL so readers never block the writer,
    enforced foreign keys (off by default in SQLite), and a busy timeout."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_db_engine(url: str | URL) -> Engine:
    """An engine configured for the backend: used by the app and by migrations alike."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    # FastAPI runs sync code in a thread pool, so a connection may move between threads.
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if _is_sqlite_memory(parsed):
        # Each in-memory connection would otherwise be a separate, empty database.
        kwargs["poolclass"] = StaticPool
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _configure_sqlite)
    return engine


class Database:
    """One engine and session factory per process; ``app.state.db`` holds it."""

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

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or in tests before dropping a DB)."""
        self.engine.dispose()
