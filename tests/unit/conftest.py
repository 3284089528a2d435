"""Shared unit-test fixtures: a migrated database on every supported backend.

Database tests run once on SQLite (a temp file), once on PostgreSQL (a fresh
``hpcportal_test_<random>`` database, dropped afterwards) and once on MariaDB (a fresh
``hpcportal_t_<random>`` database: the test role may only create those). Without a
reachable server that half is skipped locally but FAILS under ``CI=...``, so a
broken CI setup cannot pass silently.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database

#: Maintenance database used to create and drop the per-test databases.
POSTGRES_ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
#: Server where the MariaDB test databases are made (``mariadb_test_role`` in setup.sh).
MARIADB_ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_MARIADB_URL", "mysql+pymysql://hpcportal_test:hpcportal-test@127.0.0.1:3306/"
)
TEST_SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def _unavailable(reason: str, server: str = "PostgreSQL") -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{server} is required when CI is set: {reason}")
    pytest.skip(f"{server} not reachable ({reason}); set CI=1 to make this a failure")


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    name = f"hpcportal_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc))
    url: URL = make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A brand-new MariaDB database (utf8mb4) for one test, dropped afterwards."""
    admin = create_engine(
        make_url(MARIADB_ADMIN_URL),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    name = f"hpcportal_t_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc), "MariaDB")
    url: URL = make_url(MARIADB_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'portal.db'}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database URL, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def db_settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, jwt_secret=SecretStr(TEST_SECRET))


@pytest.fixture
def database(db_settings: Settings) -> Iterator[Database]:
    """A database migrated to head; disposed so PostgreSQL can drop it."""
    upgrade(db_settings)
    db = Database(db_settings)
    try:
        yield db
    finally:
        db.dispose()
