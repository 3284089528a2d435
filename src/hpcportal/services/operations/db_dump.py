"""The database half of a backup: a consistent dump, its restore, and table checksums.

Each engine is dumped with its own tool, because each tool knows its engine's
consistency rules and the dump stays restorable by hand without the portal (the RTO
case: a person with ``pg_restore`` and a backup directory at 3 a.m.):

- SQLite: the SQLite online backup API (``sqlite3.Connection.backup``), a page-by-page
  copy that is consistent even while the portal writes (WAL included); the copy is a
  plain database file.
- PostgreSQL: ``pg_dump --format=custom`` (compressed, restorable table by table with
  ``pg_restore``). The dump runs in a snapshot the portal exports
  (``pg_export_snapshot`` + ``--snapshot``), and the table checksums are read in that
  same snapshot, so the manifest describes exactly the data in the dump. A portable
  logical dump through SQLAlchemy was the alternative; it would have to re-implement
  sequences, types and constraints that ``pg_dump`` already gets right.
- MariaDB: ``mariadb-dump --single-transaction`` (plain SQL). Its snapshot is its own,
  so no table checksums are recorded for MariaDB.

Restoring PostgreSQL drops the portal's tables and loads the dump in one transaction
(``psql --single-transaction``): it happens whole or not at all. Passwords reach the
tools through the environment (``PGPASSWORD``) or a private option file, never argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, Table, create_engine, select, text
from sqlalchemy.engine import URL

from hpcportal.db import models as _models  # noqa: F401  (every table on Base.metadata)
from hpcportal.db.base import Base
from hpcportal.db.session import normalise_url
from hpcportal.db.sqlite_file import create_private, sqlite_path

#: Seconds a dump or restore tool may run before it is stopped.
TOOL_TIMEOUT = 3600.0


class DumpFailed(Exception):
    """A dump or restore tool failed or is missing; the message says which and why."""


@dataclass(frozen=True)
class TableSum:
    """A table's row count and the SHA-256 of its rows in a deterministic order."""

    rows: int
    sha256: str


@dataclass(frozen=True)
class Dump:
    """What ``dump_database`` wrote: the file (in the backup), how, and the checksums."""

    file: Path
    method: str
    tables: dict[str, TableSum] | None


def backend(url: str | URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB)."""
    return normalise_url(url).get_backend_name()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    return value


def checksum_tables(connection: Connection) -> dict[str, TableSum]:
    """Every table's rows, ordered by primary key, hashed.

    Reflected from the database itself, so a table the code does not know (a newer
    migration's) is counted too.
    """
    metadata = MetaData()
    metadata.reflect(connection)
    sums: dict[str, TableSum] = {}
    for name in sorted(metadata.tables):
        table: Table = metadata.tables[name]
        order = list(table.primary_key.columns)
        lines = (
            json.dumps([_json_value(v) for v in row], default=str, sort_keys=True)
            for row in connection.execute(select(table).order_by(*order))
        )
        # Without a primary key (not one of the portal's tables) the rows are sorted
        # here: PostgreSQL cannot order by a json column.
        ordered = lines if order else iter(sorted(lines))
        digest = hashlib.sha256()
        count = 0
        for line in ordered:
            digest.update(line.encode())
            digest.update(b"\n")
            count += 1
        sums[name] = TableSum(count, digest.hexdigest())
    return sums


def checksum_url(url: str | URL) -> dict[str, TableSum]:
    """``checksum_tables`` of the database at ``url``."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            return checksum_tables(connection)
    finally:
        engine.dispose()


def _run(argv: list[str], env: Mapping[str, str], what: str, stdin: bytes | None = None) -> None:
    if shutil.which(argv[0]) is None:
        raise DumpFailed(f"{what}: {argv[0]} is not installed on this server")
    try:
        result = subprocess.run(
            argv,
            env={**os.environ, **env},
            input=stdin,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DumpFailed(f"{what}: {argv[0]} did not finish in {TOOL_TIMEOUT:.0f} s") from exc
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        raise DumpFailed(f"{what}: {argv[0]} failed: {' / '.join(err[-3:]) or 'no message'}")


def _pg_env(url: URL) -> dict[str, str]:
    """libpq's environment for ``url``: nothing secret on a command line."""
    env = {
        "PGHOST": url.host or "",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "",
        "PGDATABASE": url.database or "",
    }
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return {k: v for k, v in env.items() if v}


@contextmanager
def _mariadb_options(url: URL) -> Iterator[str]:
    """A 0600 option file with the connection (the password stays out of argv)."""
    with tempfile.NamedTemporaryFile("w", prefix="hpcportal-my-", suffix=".cnf") as handle:
        os.chmod(handle.name, 0o600)
        handle.write("[client]\n")
        handle.write(f"host={url.host or 'localhost'}\nport={url.port or 3306}\n")
        if url.username:
            handle.write(f"user={url.username}\n")
        if url.password is not None:
            handle.write(f'password="{url.password}"\n')
        handle.flush()
        yield handle.name


def dump_database(url: str | URL, folder: Path) -> Dump:
    """Write a consistent dump of the database at ``url`` into ``folder``."""
    parsed = normalise_url(url)
    kind = parsed.get_backend_name()
    if kind == "sqlite":
        return _dump_sqlite(parsed, folder)
    if kind == "postgresql":
        return _dump_postgresql(parsed, folder)
    if kind == "mysql":
        return _dump_mariadb(parsed, folder)
    raise DumpFailed(f"backing up a {kind} database is not supported")


def _dump_sqlite(url: URL, folder: Path) -> Dump:
    path = sqlite_path(url)
    if path is None or not path.exists():
        raise DumpFailed(f"the SQLite database {url.database} does not exist")
    target = folder / "portal.sqlite"
    create_private(target)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
    finally:
        source.close()
    return Dump(target, "sqlite-backup-api", checksum_url(f"sqlite:///{target}"))


def _dump_postgresql(url: URL, folder: Path) -> Dump:
    target = folder / "portal.pgdump"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            argv = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges"]
            argv += [f"--snapshot={snapshot}", f"--file={target}"]
            _run(argv, _pg_env(url), "database dump")
            tables = checksum_tables(connection)  # the same snapshot as the dump
            connection.rollback()
    finally:
        engine.dispose()
    return Dump(target, "pg_dump-custom", tables)


def _dump_mariadb(url: URL, folder: Path) -> Dump:
    target = folder / "portal.sql"
    with _mariadb_options(url) as options:
        argv = [f"--defaults-extra-file={options}", "--single-transaction", "--skip-lock-tables"]
        argv += ["--no-tablespaces", f"--result-file={target}", str(url.database)]
        tool = "mariadb-dump" if shutil.which("mariadb-dump") else "mysqldump"
        _run([tool, *argv], {}, "database dump")
    return Dump(target, "mariadb-dump", None)


def load_database(url: str | URL, file: Path, method: str) -> None:
    """Replace the database at ``url`` with the dump ``file`` (written by ``method``)."""
    parsed = normalise_url(url)
    expected = {"sqlite": "sqlite-backup-api", "postgresql": "pg_dump-custom"}
    expected["mysql"] = "mariadb-dump"
    kind = parsed.get_backend_name()
    if expected.get(kind) != method:
        raise DumpFailed(f"a {method} dump cannot be restored into a {kind} database")
    if kind == "sqlite":
        _load_sqlite(parsed, file)
    elif kind == "postgresql":
        _load_postgresql(parsed, file)
    else:
        _load_mariadb(parsed, file)


def _load_sqlite(url: URL, file: Path) -> None:
    """Copy the backup into the database file with the backup API (one transaction)."""
    path = sqlite_path(url)
    if path is None:
        raise DumpFailed("an SQLite backup can only be restored into an SQLite file")
    create_private(path)
    source = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


#: ``CREATE TABLE [schema.]name (`` in pg_dump's and mariadb-dump's SQL.
_CREATED = re.compile(r'^CREATE TABLE (?:[\w"]+\.)?[`"]?(\w+)[`"]? \(', re.MULTILINE)


def portal_tables(present: Iterable[str], dump_sql: str) -> list[str]:
    """The tables a restore replaces: those the portal defines (its models and Alembic's
    table) or the dump creates. Another application's tables in the same database or
    schema are left alone."""
    ours = set(Base.metadata.tables) | {"alembic_version"} | set(_CREATED.findall(dump_sql))
    return [name for name in present if name in ours]


def _load_postgresql(url: URL, file: Path) -> None:
    """Drop the portal's tables, load the dump, all in one transaction."""
    sql = subprocess.run(
        ["pg_restore", "--no-owner", "--no-privileges", "--file=-", str(file)],
        capture_output=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    if sql.returncode != 0:
        raise DumpFailed(f"pg_restore could not read the dump: {sql.stderr.decode().strip()}")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            present = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
            names = portal_tables(present, sql.stdout.decode(errors="replace"))
            drops = "".join(f'DROP TABLE IF EXISTS "{n}" CASCADE;\n' for n in names)
    finally:
        engine.dispose()
    script = drops.encode() + sql.stdout
    argv = ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1"]
    _run(argv, _pg_env(url), "database restore", stdin=script)


def _load_mariadb(url: URL, file: Path) -> None:
    """Drop the portal's tables, then load the dump (MariaDB's DDL is not transactional:
    the state kept aside by ``restore`` is what undoes a failure here)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            present = connection.execute(text("SHOW TABLES")).scalars()
            names = portal_tables(present, file.read_text(errors="replace"))
            connection.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for name in names:
                connection.execute(text(f"DROP TABLE IF EXISTS `{name}`"))
            connection.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    finally:
        engine.dispose()
    with _mariadb_options(url) as options:
        tool = "mariadb" if shutil.which("mariadb") else "mysql"
        argv = [tool, f"--defaults-extra-file={options}", str(url.database)]
        _run(argv, {}, "database restore", stdin=file.read_bytes())
