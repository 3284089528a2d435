"""Writing directories and files only when they differ, so a warm ``up`` changes nothing."""

from __future__ import annotations

import os
from pathlib import Path


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    """Create ``path`` if needed and give it ``mode`` (0755: jobs run as other users)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Atomically replace ``path`` with ``text`` unless it already has it; True if written.

    The mode is fixed either way, since a config with the right text but the wrong mode
    (slurmdbd.conf readable by all, slurm.conf unreadable by users) is still wrong.
    """
    try:
        unchanged = path.read_text() == text
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    if path.stat().st_mode & 0o7777 != mode:
        os.chmod(path, mode)
    return not unchanged


def touch(path: Path, mode: int = 0o644) -> None:
    """Create an empty file if missing (the fake GPU device files)."""
    if not path.exists():
        path.touch(mode=mode)
