"""Alembic environment: online migrations only, URL handed over by ``hpcportal.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from hpcportal.db import models  # noqa: F401  (registers the tables on the metadata)
from hpcportal.db.base import Base
from hpcportal.db.migrate import URL_ATTRIBUTE
from hpcportal.db.session import create_db_engine

#: Arbitrary constant key: replicas starting together take turns migrating PostgreSQL.
PG_MIGRATION_LOCK = 0x6870_6370  # "hpcp"
#: The same on MySQL/MariaDB, a named lock held by the migrating connection.
MYSQL_MIGRATION_LOCK = "hpcportal_migrations"
#: Seconds a replica waits for another one's migration before giving up.
MYSQL_LOCK_WAIT = 600


def _lock_against_other_replicas(connection: Connection) -> None:
    """Serialise concurrent upgrades; released when the migration transaction ends
    (PostgreSQL) or the connection closes (MariaDB, whose DDL commits by itself, so
    the lock is a session's named lock rather than a transaction's)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
    elif connection.dialect.name == "mysql":
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": MYSQL_MIGRATION_LOCK, "wait": MYSQL_LOCK_WAIT},
        ).scalar()
        if got != 1:
            raise RuntimeError(
                f"another replica held the migration lock for {MYSQL_LOCK_WAIT} s; try again"
            )


def run_migrations_online() -> None:
    """Migrate using an engine built like the application's (same SQLite pragmas)."""
    url = context.config.attributes.get(URL_ATTRIBUTE)
    if url is None:
        raise RuntimeError("Run migrations through hpcportal.db.migrate, which sets the URL.")
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                _lock_against_other_replicas(connection)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Offline (SQL script) migrations are not supported.")
run_migrations_online()
