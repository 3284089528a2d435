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


def _lock_against_other_replicas(connection: Connection) -> None:
    """Serialise concurrent upgrades; released when the migration transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})


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
