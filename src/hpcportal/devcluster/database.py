"""MariaDB for slurmdbd: reuse a running server, start one only if none answers.

The server is shared with whatever else runs on the host, so the dev cluster only
adds its own database and user, and only ``down`` of a server *we* started stops it.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
from pathlib import Path

from hpcportal.devcluster.commands import run, succeeds, wait_until
from hpcportal.devcluster.daemons import mariadb
from hpcportal.devcluster.errors import DevClusterError
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import Slot

log = logging.getLogger(__name__)

DATADIR = Path("/var/lib/mysql")
SOCKET_DIR = Path("/run/mysqld")
READY_TIMEOUT = 60.0


def mariadb_reachable() -> bool:
    """True if a MariaDB server answers on this host (``mysqladmin ping``)."""
    return succeeds(["mysqladmin", "--connect-timeout=2", "ping"], timeout=10)


def initialize_datadir() -> None:
    """Create the system tables if the data directory is empty (fresh package install)."""
    if DATADIR.is_dir() and any(DATADIR.iterdir()):
        return
    log.info("initializing MariaDB data directory %s", DATADIR)
    run(["mysql_install_db", "--user=mysql"], timeout=300)


def prepare_socket_dir() -> None:
    """/run is a tmpfs without an init system to recreate mysqld's socket directory."""
    mysql = pwd.getpwnam("mysql")
    SOCKET_DIR.mkdir(mode=0o755, exist_ok=True)
    os.chown(SOCKET_DIR, mysql.pw_uid, mysql.pw_gid)


def ensure_mariadb(layout: Layout) -> bool:
    """Make a MariaDB server reachable; True if we had to start it (``down`` stops it)."""
    if mariadb_reachable():
        return False
    initialize_datadir()
    prepare_socket_dir()
    daemon = mariadb(layout)
    daemon.start()
    if not wait_until(mariadb_reachable, READY_TIMEOUT, interval=1):
        raise DevClusterError(
            f"MariaDB did not answer within {READY_TIMEOUT:.0f} s", daemon.log_tail()
        )
    return True


def db_password(layout: Layout) -> str:
    """The slurmdbd database password: generated once, then kept in ``etc/`` (0600)."""
    path = layout.db_password_file
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def ensure_database(password: str, slot: Slot, db_name: str) -> None:
    """Create the accounting database and its user, and (re)set the user's password.

    Every statement is idempotent; the password is reset because the file in ``etc/``
    is the truth (it may have been regenerated after ``down --purge``).
    """
    account = f"'{slot.db_user}'@'localhost'"
    sql = "\n".join(
        [
            f"CREATE DATABASE IF NOT EXISTS `{db_name}`;",
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';",
            f"ALTER USER {account} IDENTIFIED BY '{password}';",
            f"GRANT ALL ON `{db_name}`.* TO {account};",
        ]
    )
    run(["mysql", "-uroot"], input_text=sql, timeout=30)


def drop_database(db_name: str) -> None:
    """Forget all accounting data: for ``down --purge``, and before an ``up`` whose
    slurmctld starts without saved jobs (its job ids restart at 1, so old records
    would answer for new jobs)."""
    if not mariadb_reachable():
        return
    sql = f"DROP DATABASE IF EXISTS `{db_name}`;"
    run(["mysql", "-uroot"], input_text=sql, timeout=30)
    log.info("dropped database %s", db_name)
