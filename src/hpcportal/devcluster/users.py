"""The demo Unix users, their groups and passwords, and the portal's PAM service.

``DEMO_USERS`` is the single source of the demo identities: ``up`` creates them,
``status`` prints them, and tests import them to log in and submit jobs.
"""

from __future__ import annotations

import grp
import logging
import pwd
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pam

from hpcportal.devcluster.commands import run

log = logging.getLogger(__name__)

PAM_SERVICE = "hpcportal"
PAM_SERVICE_FILE = Path("/etc/pam.d") / PAM_SERVICE
PAM_SERVICE_TEXT = (
    "# PAM service of the hpcportal web portal (installed by `hpcportal dev-cluster up`).\n"
    "@include common-auth\n"
    "@include common-account\n"
)


@dataclass(frozen=True)
class DemoUser:
    """A demo identity: Unix user, primary group, Slurm account and portal role."""

    name: str
    password: str
    group: str
    account: str
    admin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", "alice-demo", "research", "research"),
    DemoUser("bob", "bob-demo", "research", "research"),
    DemoUser("dave", "dave-demo", "physics", "physics"),
    DemoUser("carol", "carol-demo", "hpc-admins", "admin", admin=True),
)


def demo_groups(users: tuple[DemoUser, ...] = DEMO_USERS) -> tuple[str, ...]:
    """The primary groups of ``users``, each once, in first-seen order."""
    return tuple(dict.fromkeys(u.group for u in users))


def ensure_group(name: str) -> bool:
    """Create the Unix group ``name`` unless it exists; True if it was created."""
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        run(["groupadd", name])
        log.info("created group %s", name)
        return True


def ensure_user(user: DemoUser) -> bool:
    """Create ``user`` with a home directory and bash unless it exists; True if created."""
    try:
        pwd.getpwnam(user.name)
        return False
    except KeyError:
        run(["useradd", "-m", "-s", "/bin/bash", "-g", user.group, user.name])
        log.info("created user %s", user.name)
        return True


def password_works(user: DemoUser) -> bool:
    """True if PAM accepts the demo password, i.e. ``chpasswd`` would change nothing."""
    return bool(pam.pam().authenticate(user.name, user.password, service=PAM_SERVICE))


def ensure_password(user: DemoUser) -> bool:
    """Set the demo password unless it already works; True if it was set."""
    if password_works(user):
        return False
    run(["chpasswd"], input_text=f"{user.name}:{user.password}\n")
    log.info("set the demo password of %s", user.name)
    return True


def ensure_pam_service(path: Path = PAM_SERVICE_FILE) -> bool:
    """Install the portal's PAM service file if absent; never overwrite a local one."""
    if path.exists():
        return False
    path.write_text(PAM_SERVICE_TEXT)
    path.chmod(0o644)
    log.info("installed PAM service %s", path)
    return True


def ensure_demo_users(users: tuple[DemoUser, ...] = DEMO_USERS) -> None:
    """Groups, users, PAM service, then passwords (checked through that PAM service)."""
    for group in demo_groups(users):
        ensure_group(group)
    for user in users:
        ensure_user(user)
    ensure_pam_service()
    for user in users:
        ensure_password(user)
