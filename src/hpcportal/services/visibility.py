"""Who sees what of the cluster: Slurm's ``PrivateData`` rules, in one place.

The portal reads Slurm as its own account, which sees everything, so it must hide
what Slurm would hide from the person asking. Every read path (job lists and pages,
the live socket, the cluster summary, accounting, fairshare, associations) asks a
:class:`Visibility` built here, so a person sees what ``squeue``, ``sinfo``,
``sacct``, ``sshare`` and ``sacctmgr`` run as them would show. The rules, as Slurm
22.05 to 26.05 apply them:

==============  ==========  =============================================================
flag            daemon      a regular user sees
==============  ==========  =============================================================
jobs            slurmctld   own jobs, and jobs charged to accounts they coordinate (squeue)
jobs            slurmdbd    the same of accounting records (sacct)
usage           slurmctld   own fairshare rows, and rows of coordinated accounts (sshare)
users           slurmdbd    own associations and those of coordinated accounts
                            (sacctmgr show assoc); before 23.11 also the account rows
                            above them, from 23.11 the coordinated accounts' subtrees
nodes           slurmctld   no node at all (sinfo is refused)
partitions      slurmctld   no partition at all (scontrol show partition is refused)
accounts, events, reservations: the portal reads none of these; cloud hides nothing.
==============  ==========  =============================================================

Root, the daemon's ``SlurmUser`` and users whose AdminLevel is Operator or
Administrator see everything. The portal's own admin role (``admin_group``) grants
nothing here: a portal admin sees what Slurm shows them. Without ``PrivateData``,
everyone sees everything Slurm shows (the portal still keeps a job's private part,
see ``services.jobs``, to its owner and admins).

A failure to read the roles leaves nobody privileged (``SnapshotService``), and a
failure to read ``PrivateData`` fails the read: the portal may hide more than Slurm,
never show more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpcportal.errors import Forbidden
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import (
    AccountingRecord,
    Association,
    FairshareEntry,
    Job,
    PrivateData,
    SlurmRoles,
)

#: From this slurmdbd release on, associations are selected by ``lineage`` (subtrees).
LINEAGE_RELEASE = (23, 11)
#: Flags that hide nothing from anybody (``cloud`` shows powered-down cloud nodes).
_NOT_HIDING = frozenset({"cloud"})
_REFUSED = {
    "nodes": "This cluster keeps node information private (PrivateData=nodes in Slurm).",
    "partitions": (
        "This cluster keeps partition information private (PrivateData=partitions in Slurm)."
    ),
}


@dataclass(frozen=True, slots=True)
class Visibility:
    """What one person may see under one daemon's ``PrivateData``.

    ``hidden`` holds the flags that apply to them: empty for Slurm's privileged users
    and when ``PrivateData`` is none. ``coordinates`` are the accounts they coordinate.
    ``by_lineage``: the daemon selects associations as slurmdbd 23.11 and later do
    (subtrees, no parents), else as 22.05 and 23.02 do.
    """

    username: str
    hidden: frozenset[str] = frozenset()
    coordinates: frozenset[str] = frozenset()
    by_lineage: bool = True

    @classmethod
    def of(cls, who: Principal | str, private: PrivateData, roles: SlurmRoles) -> Visibility:
        name = who if isinstance(who, str) else who.username
        hidden = private.flags - _NOT_HIDING
        if name in ("root", private.slurm_user) or roles.is_operator(name):
            hidden = frozenset()
        coordinates = roles.coordinates(name) if hidden else frozenset()
        release = private.release()
        # An unknown release gets the newer rule, which shows fewer rows.
        by_lineage = release is None or release >= LINEAGE_RELEASE
        return cls(name, frozenset(hidden), coordinates, by_lineage)

    def hides(self, flag: str) -> bool:
        return flag in self.hidden

    def _own_or_coordinated(self, user: str | None, account: str | None) -> bool:
        return user == self.username or (account is not None and account in self.coordinates)

    # --- jobs (squeue, sacct) and usage (sshare) -------------------------------------

    def sees_job(self, job: Job | AccountingRecord) -> bool:
        """``squeue``/``sacct`` as this person list the job."""
        return self.sees_job_of(job.user, job.account)

    def sees_job_of(self, user: str | None, account: str | None) -> bool:
        """``squeue``/``sacct`` as this person list a job of ``user`` charged to ``account``."""
        return "jobs" not in self.hidden or self._own_or_coordinated(user, account)

    def sees_usage(self, entry: FairshareEntry) -> bool:
        """``sshare`` as this person prints the row: their own, or a coordinated account's
        (an account's own row included); with ``usage`` private, no other account rows."""
        return "usage" not in self.hidden or self._own_or_coordinated(entry.user, entry.account)

    @property
    def jobs_key(self) -> str:
        """Equal for two people exactly when they see the same jobs (memo keys)."""
        if "jobs" not in self.hidden:
            return "*"
        return f"{self.username}|{','.join(sorted(self.coordinates))}"

    @property
    def view_key(self) -> str:
        """Equal when two people see the same cluster summary (jobs, nodes, partitions)."""
        flags = ",".join(sorted(self.hidden & {"nodes", "partitions"}))
        return f"{self.jobs_key}|{flags}"

    # --- associations (sacctmgr show assoc) --------------------------------------------

    def associations(self, rows: Sequence[Association]) -> list[Association]:
        """The associations ``sacctmgr show assoc`` as this person lists.

        With ``users`` private, slurmdbd selects by the tree of associations. From
        23.11 (``lineage``): their own associations and everything below an account they
        coordinate. Before (``lft``/``rgt``): their own associations and all those of
        accounts they coordinate, plus every account row above them, up to ``root``.
        """
        if "users" not in self.hidden:
            return list(rows)
        parent_of = {a.account: a.parent for a in rows if a.user is None}

        def ancestry(account: str) -> list[str]:
            chain: list[str] = []
            while account and account not in chain:
                chain.append(account)
                account = parent_of.get(account) or ""
            return chain

        def selected(a: Association) -> bool:
            if a.user == self.username:
                return True
            if self.by_lineage:
                return any(acct in self.coordinates for acct in ancestry(a.account))
            return a.account in self.coordinates

        mine = [a for a in rows if selected(a)]
        if self.by_lineage:
            return mine
        above = {acct for a in mine for acct in ancestry(a.account)}
        chosen = {id(a) for a in mine}
        return [a for a in rows if id(a) in chosen or (a.user is None and a.account in above)]

    # --- nodes and partitions (refused outright) -----------------------------------------

    def require(self, flag: str) -> None:
        """Refuse (403) what Slurm refuses this person outright: ``nodes``, ``partitions``."""
        if flag in self.hidden and flag in _REFUSED:
            raise Forbidden(_REFUSED[flag])


EVERYONE = Visibility(username="")


def for_snapshot(who: Principal | str, snap: ClusterSnapshot) -> Visibility:
    """Visibility under slurmctld's ``PrivateData`` read with ``snap``."""
    return Visibility.of(who, snap.private_data, snap.roles)


def for_accounting(who: Principal | str, adapter: SlurmAdapter) -> Visibility:
    """Visibility under slurmdbd's ``PrivateData`` (blocking: may run ``sacctmgr``)."""
    private = adapter.database_private_data()
    roles = adapter.roles() if private.flags - _NOT_HIDING else SlurmRoles()
    return Visibility.of(who, private, roles)


def visible_jobs(
    snap: ClusterSnapshot, vis: Visibility, jobs: Iterable[Job] | None = None
) -> tuple[Job, ...]:
    """The snapshot's jobs (or ``jobs``, in their order) this person sees.

    Without ``jobs``, computed once per snapshot and ``jobs_key``, so everyone who sees
    the same jobs shares one tuple; unrestricted viewers get ``snap.jobs`` itself.
    """
    if "jobs" not in vis.hidden:
        return snap.jobs if jobs is None else tuple(jobs)
    if jobs is not None:
        return tuple(j for j in jobs if vis.sees_job(j))
    result: tuple[Job, ...] = snap.memo(
        f"visible_jobs:{vis.jobs_key}", lambda: tuple(j for j in snap.jobs if vis.sees_job(j))
    )
    return result
