"""Run a command as another Unix user, after checking that the user may be acted for.

Every action done *for* a user (reading their job script today; sbatch, scancel and
file access later) goes through :func:`wrap_argv`, so the kernel and Slurm see that
user and decide what is allowed. Root and system accounts are never a target.

When the portal itself runs as root (the dev cluster, tests) the wrapper is
``runuser``; as an unprivileged service account it is ``sudo -n`` and the sudoers
rule documented in the README decides.
"""

from __future__ import annotations

import os
import pwd
import re

_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_DISABLED_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})


class RunAsRefused(Exception):
    """The target user is not one the portal may act for."""


def check_target_user(username: str, min_uid: int) -> pwd.struct_passwd:
    """Return the user's passwd entry if the portal may act as them, else raise."""
    if not _NAME.fullmatch(username):
        raise RunAsRefused(f"{username!r} is not a valid user name")
    try:
        entry = pwd.getpwnam(username)
    except KeyError as exc:
        raise RunAsRefused(f"no such user {username!r}") from exc
    if entry.pw_uid == 0 or entry.pw_uid < min_uid:
        raise RunAsRefused(f"{username!r} is a system account")
    if entry.pw_shell in _DISABLED_SHELLS:
        raise RunAsRefused(f"{username!r} has a disabled shell")
    return entry


def wrap_argv(username: str, argv: list[str], *, min_uid: int) -> list[str]:
    """Prefix ``argv`` so that it runs as ``username`` with the environment we pass."""
    check_target_user(username, min_uid)
    if os.geteuid() == 0:
        return ["runuser", "-u", username, "--", *argv]
    return ["sudo", "-n", "-u", username, "--", *argv]
