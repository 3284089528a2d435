"""Database layer on SQLite and PostgreSQL: migrations, revocation, login throttling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from hpcportal.config import Settings
from hpcportal.db import models
from hpcportal.db.base import Base
from hpcportal.db.migrate import current_revision, head_revision, upgrade
from hpcportal.db.session import Database, normalise_url
from hpcportal.errors import RateLimited
from hpcportal.services import auth

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _claims(jti: str, expires_at: datetime) -> auth.TokenClaims:
    return auth.TokenClaims(
        subject="alice", jti=jti, role="user", issued_at=NOW, expires_at=expires_at
    )


# --- Migrations ---------------------------------------------------------------------


def test_fresh_database_has_no_revision(db_settings: Settings) -> None:
    db = Database(db_settings)
    try:
        assert current_revision(db.engine) is None
    finally:
        db.dispose()


def test_upgrade_reaches_head_with_all_tables(database: Database) -> None:
    assert head_revision() is not None
    assert current_revision(database.engine) == head_revision()
    tables = set(inspect(database.engine).get_table_names())
    assert {*Base.metadata.tables, "alembic_version"} <= tables


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_twice_is_a_no_op(db_settings: Settings, database: Database) -> None:
    with database.session() as session:
        session.add(models.RevokedToken(jti="kept", expires_at=NOW))
    upgrade(db_settings)
    assert current_revision(database.engine) == head_revision()
    with database.session() as session:
        assert session.get(models.RevokedToken, "kept") is not None


def test_sqlite_connections_use_wal_and_foreign_keys(sqlite_url: str) -> None:
    db = Database(Settings(database_url=sqlite_url))
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgres_urls_use_psycopg3(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


# --- Revocation ---------------------------------------------------------------------


def test_revocation_is_seen_by_another_replica(db_settings: Settings, database: Database) -> None:
    with database.session() as session:
        auth.revoke_token(session, _claims("jti-1", NOW + timedelta(hours=1)), now=NOW)
    other = Database(db_settings)  # a second replica: its own engine and pool
    try:
        with other.session() as session:
            assert auth.is_revoked(session, "jti-1")
            assert not auth.is_revoked(session, "jti-2")
    finally:
        other.dispose()


def test_revoking_twice_is_harmless(database: Database) -> None:
    claims = _claims("twice", NOW + timedelta(hours=1))
    with database.session() as session:
        auth.revoke_token(session, claims, now=NOW)
    with database.session() as session:
        auth.revoke_token(session, claims, now=NOW)
        assert auth.is_revoked(session, "twice")


def test_revoking_prunes_expired_revocations(database: Database) -> None:
    with database.session() as session:
        auth.revoke_token(session, _claims("old", NOW + timedelta(minutes=1)), now=NOW)
    later = NOW + timedelta(minutes=2)
    with database.session() as session:
        auth.revoke_token(session, _claims("new", later + timedelta(hours=1)), now=later)
    with database.session() as session:
        assert not auth.is_revoked(session, "old")
        assert auth.is_revoked(session, "new")


def test_expiry_round_trips_as_aware_utc(database: Database) -> None:
    expires = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    with database.session() as session:
        auth.revoke_token(session, _claims("tz", expires), now=NOW)
    with database.session() as session:
        row = session.get(models.RevokedToken, "tz")
        assert row is not None
        assert row.expires_at == expires
        assert row.expires_at.tzinfo is not None


# --- Login throttling ---------------------------------------------------------------


def _fail(database: Database, settings: Settings, user: str, address: str, at: datetime) -> None:
    with database.session() as session:
        auth.record_login_failure(session, settings, user, address, at)


def _check(database: Database, settings: Settings, user: str, address: str, at: datetime) -> None:
    with database.session() as session:
        auth.check_login_allowed(session, settings, user, address, at)


@pytest.fixture
def limits(db_settings: Settings) -> Settings:
    return db_settings.model_copy(update={"login_max_failures": 3, "login_window_seconds": 60})


def test_user_is_blocked_after_max_failures(database: Database, limits: Settings) -> None:
    for i in range(3):
        _check(database, limits, "alice", "10.0.0.1", NOW + timedelta(seconds=i))
        _fail(database, limits, "alice", "10.0.0.1", NOW + timedelta(seconds=i))
    with pytest.raises(RateLimited) as info:
        _check(database, limits, "alice", "10.0.0.9", NOW + timedelta(seconds=10))
    # The block lifts when the first of the three failures leaves the 60 s window.
    assert info.value.headers == {"Retry-After": "50"}
    assert "try again in 50 s" in info.value.message
    _check(database, limits, "bob", "10.0.0.9", NOW + timedelta(seconds=10))


def test_block_lifts_when_failures_leave_the_window(database: Database, limits: Settings) -> None:
    for i in range(3):
        _fail(database, limits, "alice", "a", NOW + timedelta(seconds=i))
    _check(database, limits, "alice", "a", NOW + timedelta(seconds=60))


def test_throttle_is_shared_between_replicas(
    db_settings: Settings, database: Database, limits: Settings
) -> None:
    for i in range(3):
        _fail(database, limits, "alice", "a", NOW + timedelta(seconds=i))
    other = Database(db_settings)
    try:
        with pytest.raises(RateLimited):
            _check(other, limits, "alice", "b", NOW + timedelta(seconds=5))
    finally:
        other.dispose()


def test_address_allows_four_times_the_user_limit(database: Database, limits: Settings) -> None:
    for i in range(11):
        _fail(database, limits, f"user{i}", "10.0.0.1", NOW)
    _check(database, limits, "someone", "10.0.0.1", NOW)
    _fail(database, limits, "user11", "10.0.0.1", NOW)
    with pytest.raises(RateLimited):
        _check(database, limits, "someone", "10.0.0.1", NOW)
    _check(database, limits, "someone", "10.0.0.2", NOW)


def test_success_clears_only_that_users_failures(database: Database, limits: Settings) -> None:
    for user in ("alice", "alice", "bob"):
        _fail(database, limits, user, "a", NOW)
    with database.session() as session:
        auth.clear_login_failures(session, "alice")
    with database.session() as session:
        users = session.scalars(select(models.LoginFailure.username)).all()
    assert users == ["bob"]


def test_old_failures_are_pruned(database: Database, limits: Settings) -> None:
    _fail(database, limits, "alice", "a", NOW)
    _fail(database, limits, "bob", "a", NOW + timedelta(minutes=5))
    with database.session() as session:
        count = session.scalar(select(func.count()).select_from(models.LoginFailure))
    assert count == 1
