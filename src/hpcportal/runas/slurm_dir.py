"""The one folder of Slurm clients the run-as helper puts before its fixed ``PATH``.

A site (or a dev cluster of a newer release) may keep its Slurm clients outside
``/usr/bin``. The helper then needs that folder, but a request must never choose it:
whoever can write there decides what runs as every user. So the folder is fixed in
the helper's text (``SLURM_PATH``) by ``hpcportal runas install --slurm-bin-dir``, or
by the portal itself when it runs the helper under ``runuser`` as root, and only a
folder that nobody but root can change is accepted: root-owned and not writable by
group or others, every folder above it root-owned and closed to others (or sticky,
like ``/tmp``), and every allow-listed command in it a root-owned file nobody else
may write. The helper re-checks the folder itself on every run.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from hpcportal.runas.helper import SLURM_COMMANDS

#: What a folder name may contain: it lands in a Python literal and in ``PATH``.
_SAFE_NAME = re.compile(r"^/[A-Za-z0-9_./+-]*$")
_CONSTANT = re.compile(r'^SLURM_PATH = ""', re.M)
_INSTALLED = re.compile(r"^SLURM_PATH = (['\"])(.*?)\1", re.M)


class UnsafeSlurmDir(Exception):
    """The folder could be changed by someone other than root, or is unusable."""


def _closed(info: os.stat_result, *, sticky_ok: bool) -> bool:
    """Root-owned and writable by nobody else (a sticky folder may be, like /tmp)."""
    if info.st_uid != 0:
        return False
    if not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return True
    return sticky_ok and stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_ISVTX)


def _check_ancestors(path: Path) -> None:
    for parent in path.parents:
        if not _closed(os.stat(parent), sticky_ok=True):
            raise UnsafeSlurmDir(f"{parent} (above {path}) can be changed by others than root")


def trusted_slurm_dir(path: Path) -> Path:
    """``path`` with symlinks resolved, if only root can change what runs from it."""
    resolved = Path(os.path.realpath(path))
    if not _SAFE_NAME.fullmatch(str(resolved)) or resolved == Path("/"):
        raise UnsafeSlurmDir(f"{path} must be an absolute folder name of A-Z a-z 0-9 _ . / + -")
    try:
        info = os.stat(resolved)
    except FileNotFoundError as exc:
        raise UnsafeSlurmDir(f"{path} does not exist") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSlurmDir(f"{path} is not a folder")
    if not _closed(info, sticky_ok=False):
        raise UnsafeSlurmDir(
            f"{path} must be owned by root and not writable by group or others "
            f"(it is uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
        )
    _check_ancestors(resolved)
    for name in sorted(SLURM_COMMANDS):
        command = resolved / name
        if not os.path.lexists(command):
            continue
        real = Path(os.path.realpath(command))
        target = os.stat(real)
        if not stat.S_ISREG(target.st_mode) or not _closed(target, sticky_ok=False):
            raise UnsafeSlurmDir(f"{command} must be a root-owned file only root may change")
        if real.parent != resolved:
            _check_ancestors(real)
            if not _closed(os.stat(real.parent), sticky_ok=False):
                raise UnsafeSlurmDir(f"{real.parent} (where {command} points) is open to others")
    return resolved


def fix_slurm_dir(source: str, slurm_dir: Path | None) -> str:
    """The helper's source with ``SLURM_PATH`` set to ``slurm_dir`` (already trusted)."""
    if slurm_dir is None:
        return source
    if not _SAFE_NAME.fullmatch(str(slurm_dir)):
        raise UnsafeSlurmDir(f"{slurm_dir} is not a plain absolute folder name")
    fixed, count = _CONSTANT.subn(f"SLURM_PATH = {str(slurm_dir)!r}", source, count=1)
    if count != 1:
        raise RuntimeError("the helper has no SLURM_PATH constant to fix")
    return fixed


def installed_slurm_dir(helper: Path) -> str | None:
    """The folder fixed in an installed helper ("" for none); None if it cannot be read."""
    try:
        text = helper.read_text(errors="replace")
    except OSError:
        return None
    match = _INSTALLED.search(text)
    return match.group(2) if match else None
