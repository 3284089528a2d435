"""The SQLite database file is the portal's secret: make it private and keep it so.

It holds session revocations, API token hashes, audit entries and users' job history,
so no other account on the machine may read it. SQLite creates a new file with the
process umask (usually 0644) and gives its ``-wal`` and ``-shm`` files the mode of the
database file, so the portal creates the file itself, 0600, before SQLite opens it
(and any folder it has to create, 0700). ``hpcportal serve`` and ``hpcportal db
upgrade`` refuse to start on a file that group or others can read, naming the
``chmod`` that fixes it, instead of serving from a readable database.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import URL, make_url

#: Files SQLite keeps beside the database in WAL mode; they hold recent writes.
COMPANIONS = ("-wal", "-shm")


class DatabaseFileExposed(Exception):
    """The SQLite database (or its WAL files) can be read by other accounts."""


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind an SQLite URL; None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.database.startswith("file:"):  # a URI filename: leave it to whoever wrote it
        return None
    return Path(parsed.database).absolute()


def create_private(path: Path) -> None:
    """Create the database file 0600 (and missing folders 0700) unless it exists.

    An existing file is left as it is: ``check_private`` judges it.
    """
    _make_folders(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)  # whatever the umask took away or left


def _make_folders(folder: Path) -> None:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for item in reversed(missing):
        try:
            item.mkdir(mode=0o700)
        except FileExistsError:
            continue


def exposed_files(path: Path) -> list[tuple[Path, int]]:
    """The database file and companions that group or others can read or write."""
    found = []
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in COMPANIONS)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append((candidate, mode))
    return found


def check_private(url: str | URL) -> None:
    """Raise ``DatabaseFileExposed`` with the fix if other accounts can read the database."""
    path = sqlite_path(url)
    if path is None:
        return
    exposed = exposed_files(path)
    if not exposed:
        return
    listed = ", ".join(f"{p} (mode {mode:04o})" for p, mode in exposed)
    names = " ".join(str(p) for p, _ in exposed)
    raise DatabaseFileExposed(
        f"The SQLite database can be read by other accounts on this machine: {listed}. "
        f"It holds sessions, token hashes and the audit log. Make it private to the "
        f"portal's account, then start again:\n  chmod 600 {names}"
    )
