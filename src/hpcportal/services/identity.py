"""Who a Unix user is to the portal: name, ids, groups and role."""

from __future__ import annotations

import contextlib
import grp
import pwd
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "admin"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated Unix user. The role is derived from group membership.

    ``shell`` is the login shell NSS names (empty means ``/bin/sh``); an account
    whose shell is disabled may not use the portal (``services.accounts``).
    """

    username: str
    uid: int
    gid: int
    groups: tuple[str, ...]
    role: Role
    shell: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def owns_or_admin(self, owner: str) -> bool:
        """Whether this person may see the private part of, and act on, something
        ``owner`` owns (a job, a record): the owner and admins may."""
        return self.is_admin or owner == self.username


def lookup_principal(username: str, admin_group: str) -> Principal | None:
    """Read the user from the system's user database (NSS); ``None`` if unknown."""
    try:
        pw = pwd.getpwnam(username)
    except KeyError:
        return None
    names = {g.gr_name for g in grp.getgrall() if username in g.gr_mem}
    with contextlib.suppress(KeyError):
        names.add(grp.getgrgid(pw.pw_gid).gr_name)
    groups = tuple(sorted(names))
    role: Role = "admin" if admin_group in names else "user"
    return Principal(
        username=pw.pw_name,
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        groups=groups,
        role=role,
        shell=pw.pw_shell,
    )
