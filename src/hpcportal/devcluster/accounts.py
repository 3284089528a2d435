"""Slurm accounting for the demo users, made idempotent by looking before adding.

``sacctmgr -i add`` of something that exists exits non-zero ("Nothing new added"),
so every step first reads the current state with ``sacctmgr -n -P show``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from hpcportal.devcluster.commands import run
from hpcportal.devcluster.templates import CLUSTER_NAME
from hpcportal.devcluster.users import DEMO_USERS, DemoUser

log = logging.getLogger(__name__)

DEMO_QOS = {"high": 100}
USER_QOS = ("normal", "high")
DEFAULT_QOS = "normal"
#: (user, account): the demo user who coordinates an account (manages its users
#: within what Slurm lets coordinators do; not a portal admin).
DEMO_COORDINATORS = (("dave", "physics"),)


def sacctmgr_rows(env: Mapping[str, str], *args: str) -> list[list[str]]:
    """``sacctmgr -n -P show ARGS`` split into rows of fields."""
    out = run(["sacctmgr", "-n", "-P", "show", *args], env=env, timeout=30).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def sacctmgr_change(env: Mapping[str, str], *args: str) -> None:
    """Run a modifying sacctmgr command without its interactive confirmation."""
    run(["sacctmgr", "-i", *args], env=env, timeout=30)
    log.info("sacctmgr %s", " ".join(args))


def ensure_cluster(env: Mapping[str, str]) -> bool:
    names = {row[0] for row in sacctmgr_rows(env, "cluster", "format=cluster")}
    if CLUSTER_NAME in names:
        return False
    sacctmgr_change(env, "add", "cluster", CLUSTER_NAME)
    return True


def ensure_qos(env: Mapping[str, str]) -> bool:
    """Create the demo QoS levels, or fix their priority; True if anything changed."""
    current = {row[0]: row[1] for row in sacctmgr_rows(env, "qos", "format=name,priority")}
    changed = False
    for name, priority in DEMO_QOS.items():
        if name not in current:
            sacctmgr_change(env, "add", "qos", name, f"Priority={priority}")
            changed = True
        elif current[name] != str(priority):
            sacctmgr_change(env, "modify", "qos", name, "set", f"Priority={priority}")
            changed = True
    return changed


def ensure_accounts(env: Mapping[str, str], names: Iterable[str]) -> bool:
    existing = {row[0] for row in sacctmgr_rows(env, "account", "format=account")}
    changed = False
    for name in names:
        if name in existing:
            continue
        sacctmgr_change(
            env,
            "add",
            "account",
            name,
            f"Cluster={CLUSTER_NAME}",
            f"Description={name}",
            f"Organization={CLUSTER_NAME}",
        )
        changed = True
    return changed


def ensure_user_association(
    env: Mapping[str, str], user: DemoUser, associations: Mapping[tuple[str, str], set[str]]
) -> bool:
    """Add ``user`` to its account with the demo QoS list, or fix the QoS list."""
    key = (user.name, user.account)
    if key not in associations:
        admin = ["AdminLevel=Administrator"] if user.admin else []
        sacctmgr_change(
            env,
            "add",
            "user",
            user.name,
            f"Account={user.account}",
            f"Cluster={CLUSTER_NAME}",
            f"QOS={','.join(USER_QOS)}",
            f"DefaultQOS={DEFAULT_QOS}",
            *admin,
        )
        return True
    if associations[key] != set(USER_QOS):
        sacctmgr_change(
            env,
            "modify",
            "user",
            "where",
            f"name={user.name}",
            f"account={user.account}",
            f"cluster={CLUSTER_NAME}",
            "set",
            f"QOS={','.join(USER_QOS)}",
        )
        return True
    return False


def ensure_admin_level(env: Mapping[str, str], user: DemoUser, current: str) -> bool:
    """Make Slurm's admin level match the demo user's ``admin`` flag."""
    wanted = "Administrator" if user.admin else "None"
    if current == wanted:
        return False
    sacctmgr_change(env, "modify", "user", user.name, "set", f"AdminLevel={wanted}")
    return True


def ensure_coordinators(
    env: Mapping[str, str], coordinators: tuple[tuple[str, str], ...] = DEMO_COORDINATORS
) -> bool:
    """Make each (user, account) of ``coordinators`` a coordinator of that account."""
    rows = sacctmgr_rows(env, "user", "withcoord", "format=user,coordinators")
    current = {r[0]: set(filter(None, r[1].split(","))) for r in rows if len(r) > 1}
    changed = False
    for user, account in coordinators:
        if user in current and account not in current[user]:
            sacctmgr_change(env, "add", "coordinator", f"account={account}", f"names={user}")
            changed = True
    return changed


def ensure_accounting(env: Mapping[str, str], users: tuple[DemoUser, ...] = DEMO_USERS) -> bool:
    """Cluster, QoS, accounts, users, coordinators, in the order they depend on; True
    if anything changed."""
    changed = ensure_cluster(env)
    changed |= ensure_qos(env)
    changed |= ensure_accounts(env, dict.fromkeys(u.account for u in users))
    rows = sacctmgr_rows(
        env, "assoc", "where", f"cluster={CLUSTER_NAME}", "format=user,account,qos"
    )
    associations = {(r[0], r[1]): set(filter(None, r[2].split(","))) for r in rows if r[0]}
    for user in users:
        changed |= ensure_user_association(env, user, associations)
    levels = {r[0]: r[1] for r in sacctmgr_rows(env, "user", "format=user,adminlevel")}
    for user in users:
        changed |= ensure_admin_level(env, user, levels.get(user.name, "None"))
    names = {u.name for u in users}
    changed |= ensure_coordinators(env, tuple(c for c in DEMO_COORDINATORS if c[0] in names))
    return changed
