"""Whom the portal may act as: the check behind a 403 that says why.

The helper and sudo refuse the same accounts again (``denied.py``, the sudoers rule);
this check runs first, in the portal, so a person is told the reason instead of
meeting a bare refusal from sudo.
"""

from __future__ import annotations

import grp
import os
import pwd
import re

from hpcportal.runas.denied import DenyList

_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_DISABLED_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})


class RunAsRefused(Exception):
    """The target user is not one the portal may act for."""


def check_target_user(
    username: str, min_uid: int, deny: DenyList = DenyList(), group: str | None = None
) -> pwd.struct_passwd:
    """Return the user's passwd entry if the portal may act as them, else raise. The
    helper and sudo check the same again (``denied.py``); this says why, as a 403."""
    if not _NAME.fullmatch(username):
        raise RunAsRefused(f"{username!r} is not a valid user name")
    try:
        entry = pwd.getpwnam(username)
    except KeyError as exc:
        raise RunAsRefused(f"no such user {username!r}") from exc
    if entry.pw_uid == 0 or entry.pw_uid < min_uid:
        raise RunAsRefused(f"{username!r} is a system account")
    if deny.refuses(entry):
        raise RunAsRefused(
            f"{username!r} is a Slurm daemon account or on the deny list (runas_deny_users)"
        )
    if group is not None and not _in_group(entry, group):
        raise RunAsRefused(f"{username!r} is not in the group {group!r} of portal users")
    if entry.pw_shell in _DISABLED_SHELLS:
        raise RunAsRefused(f"{username!r} has a disabled shell")
    return entry


def _in_group(entry: pwd.struct_passwd, group: str) -> bool:
    """Membership as sudo sees it: the primary group or a supplementary one."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False  # a group that does not exist admits nobody, as in sudoers
    return gid in os.getgrouplist(entry.pw_name, entry.pw_gid)
