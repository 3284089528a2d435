"""The SQLite database file is private, and the portal refuses one others can read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database
from hpcportal.db.sqlite_file import DatabaseFileExposed, check_private, sqlite_path

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def portal_cli(*argv: str, database: Path) -> subprocess.CompletedProcess[str]:
    """``hpcportal ...`` in its own process, as an operator runs it (with a timeout, so a
    check that failed to refuse cannot leave ``serve`` running)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HPCPORTAL_DATABASE_URL": f"sqlite:///{database}",
        "HPCPORTAL_JWT_SECRET": SECRET,
        "HPCPORTAL_SLURM_CONF": "/nonexistent/slurm.conf",
    }
    return subprocess.run(
        [sys.executable, "-m", "hpcportal.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_portal_creates_its_database_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # what most services run with
    try:
        path = tmp_path / "state" / "nested" / "portal.db"
        settings = Settings(database_url=f"sqlite:///{path}", jwt_secret=SecretStr(SECRET))
        upgrade(settings)
        database = Database(settings)
        with database.session() as session:  # a write, so the WAL files exist
            session.execute(text("CREATE TABLE probe (x INTEGER)"))
            session.execute(text("INSERT INTO probe VALUES (1)"))
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists()
        assert mode(path) == 0o600
        assert mode(wal) == 0o600 and mode(shm) == 0o600
        assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
        check_private(settings.database_url)  # what serve checks: passes
        database.dispose()
    finally:
        os.umask(old_umask)


def test_an_existing_folder_and_file_keep_their_modes(tmp_path: Path) -> None:
    """The portal never loosens or silently fixes what an operator made: it judges."""
    tmp_path.chmod(0o755)
    path = tmp_path / "portal.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    Database(Settings(database_url=f"sqlite:///{path}", jwt_secret=SecretStr(SECRET))).dispose()
    assert mode(path) == 0o640 and mode(tmp_path) == 0o755
    with pytest.raises(DatabaseFileExposed):
        check_private(f"sqlite:///{path}")


def test_serve_refuses_a_database_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "portal.db"
    path.touch()
    path.chmod(0o644)
    done = portal_cli("serve", "--port", "1", database=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Refusing to start" in done.stderr
    assert "can be read by other accounts" in done.stderr
    assert f"chmod 600 {path}" in done.stderr
    assert mode(path) == 0o644  # refused, not changed behind the operator's back


def test_db_upgrade_refuses_readable_wal_files(tmp_path: Path) -> None:
    path = tmp_path / "portal.db"
    path.touch(mode=0o600)
    path.chmod(0o600)
    wal = Path(f"{path}-wal")
    wal.touch()
    wal.chmod(0o644)
    done = portal_cli("db", "upgrade", database=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"chmod 600 {wal}" in done.stderr and f"{path} (mode" not in done.stderr
    wal.chmod(0o600)
    done = portal_cli("db", "upgrade", database=path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_sqlite_files_are_judged() -> None:
    assert sqlite_path("postgresql+psycopg://u:p@127.0.0.1/db") is None
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    check_private("postgresql+psycopg://u:p@127.0.0.1/db")
