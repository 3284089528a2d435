"""Who may manage accounts, what they see, and slurmdbd's silent refusal.

The portal's admin role, or a Slurm coordinator (``sacctmgr show user withcoord``):
``view`` shows a coordinator the accounts they coordinate (an admin every one), and
someone who is neither is refused by the portal (403, ``check_may_manage``) before
anything runs; Slurm decides every change, since ``plan.apply`` runs it as the person.
When a coordinator modifies or removes an association of an account they do not
coordinate, slurmdbd matches nothing and says only "Nothing modified/deleted"
(``slurm.admin_accounts``' notes); the plan has just read that the association
exists, so ``apply`` answers that as the refusal it is (403, with what Slurm printed).
Planning the changes is ``accounts``.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, SlurmInvalidRequest, SlurmPermissionDenied
from hpcportal.services.admin import plan as admin_plan
from hpcportal.services.admin.plan import Applied, Plan
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import admin_accounts
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_accounts import AccountInfo, Association, SlurmRoles
from hpcportal.slurm.admin_actions import SlurmAdmin

#: Job states that count as a job of an account now (pending or running).
ACTIVE = ("PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING")
_EXISTING = ("account.modify", "account.delete", "user.modify", "user.remove")


class AccountNode(BaseModel):
    """An account as the admin page lists it: its values, its own association, its
    users' associations, its jobs now and its depth in the tree."""

    info: AccountInfo
    association: Association
    users: list[Association]
    depth: int
    pending: int
    running: int


class AccountsView(BaseModel):
    """What the accounts page and ``GET /admin/accounts`` show to ``who``: every
    account for a portal admin, the accounts they coordinate for a coordinator."""

    admin: bool
    coordinates: list[str]
    accounts: list[AccountNode]


def roles(adapter: SlurmAdapter, who: Principal) -> SlurmRoles:
    """``who``'s Slurm AdminLevel and coordinated accounts (blocking)."""
    return admin_accounts.read_roles(adapter.executor, who.username)


def check_may_manage(adapter: SlurmAdapter, who: Principal) -> SlurmRoles:
    """A portal admin or a Slurm coordinator of some account; else 403 (blocking)."""
    found = roles(adapter, who)
    if not who.is_admin and not found.coordinates:
        raise Forbidden(
            "Accounts are managed by portal administrators and Slurm coordinators; "
            f"{who.username} is neither."
        )
    return found


def apply(
    admin: SlurmAdmin,
    adapter: SlurmAdapter,
    database: Database,
    plan: Plan,
    who: Principal,
    reason: str,
    address: str | None = None,
) -> Applied:
    """``plan.apply``, answering slurmdbd's silent "Nothing modified/deleted" on an
    association the plan just read as the refusal it is (403)."""
    try:
        return admin_plan.apply(admin, database, plan, who, reason, address)
    except SlurmInvalidRequest as exc:
        kind = plan.kind.removesuffix(".revert")
        if kind not in _EXISTING:
            raise
        found = roles(adapter, who)
        account = plan.target.split(":", 1)[1].rpartition("@")[2]
        if found.slurm_admin or account in found.coordinates:
            raise
        raise SlurmPermissionDenied(
            f"Slurm refused: {who.username} is neither a Slurm administrator nor a "
            f"coordinator of account {account}, so slurmdbd changed nothing ({exc.message})"
        ) from exc


def view(adapter: SlurmAdapter, snapshot: ClusterSnapshot, who: Principal) -> AccountsView:
    """The account tree ``who`` may see (blocking: three sacctmgr reads)."""
    found = check_may_manage(adapter, who)
    infos = {a.name: a for a in admin_accounts.read_accounts(adapter.executor)}
    rows = admin_accounts.read_associations(adapter.executor)
    own = {a.account: a for a in rows if a.user is None}
    children: dict[str | None, list[str]] = {}
    for assoc in own.values():
        children.setdefault(assoc.parent, []).append(assoc.account)
    shown = set(infos) if who.is_admin else set(found.coordinates)
    jobs = Counter((j.account, j.state == "PENDING") for j in snapshot.jobs if j.state in ACTIVE)
    nodes: list[AccountNode] = []

    def walk(name: str, depth: int) -> None:
        if name in shown and name in infos:
            nodes.append(
                AccountNode(
                    info=infos[name],
                    association=own[name],
                    users=sorted(
                        (a for a in rows if a.account == name and a.user),
                        key=lambda a: a.user or "",
                    ),
                    depth=depth,
                    pending=jobs[(name, True)],
                    running=jobs[(name, False)],
                )
            )
        for child in sorted(children.get(name, [])):
            walk(child, depth + 1)

    for top in sorted(children.get(None, [])):
        walk(top, 0)
    return AccountsView(admin=who.is_admin, coordinates=list(found.coordinates), accounts=nodes)
