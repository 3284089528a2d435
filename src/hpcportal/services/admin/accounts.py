"""Accounts, users in accounts and association limits, planned before they run.

A plan reads the current values from slurmdbd (``slurm/admin_accounts.py``, never a
cache), builds the ``sacctmgr`` commands of the change (``admin_accounts`` is the only
place their argv is made) and says what the change touches: the active jobs of that
association (an account's: of the account), and simply which pending ones a limit
change would let start (they wait on exactly that limit, ``Assoc...Limit``, and it is
raised or removed) or hold back (a MaxWall below their time limit, a MaxJobs their
user already runs as many as). The revert is built at plan time from the values
read: a modify is undone by the modify back to them, a create or an add by the
delete, a delete by the create (or add) with every recorded value.

Who may manage accounts, what they see and how apply answers slurmdbd's silent
refusal is ``account_access``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from hpcportal.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from hpcportal.services.admin.account_access import ACTIVE
from hpcportal.services.admin.plan import AffectedJob, Plan
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import admin_accounts
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_accounts import AccountInfo, Association, AssocLimits
from hpcportal.slurm.models import Job

#: Pending reasons (``AssocMaxJobsLimit`` ...) -> the limit they wait on (first match).
_REASON_FIELDS = (
    ("AssocMaxJobsLimit", "max_jobs"),
    ("AssocMaxSubmitJob", "max_submit_jobs"),
    ("AssocMaxWall", "max_wall_minutes"),
    ("AssocGrpJobs", "grp_jobs"),
    ("AssocGrpSubmit", "grp_submit_jobs"),
    ("AssocGrp", "grp_tres"),
    ("AssocMax", "max_tres_per_job"),
)
#: Kinds whose "Nothing modified/deleted" on an association just read means refusal.


class AssocChange(BaseModel):
    """Limits to set; a field left out keeps its value, a limit given as null (a TRES
    map as {}) is removed, a null fairshare is Slurm's default (1), an empty QoS list
    is the parent's."""

    model_config = ConfigDict(extra="forbid")

    fairshare: int | str | None = None
    grp_tres: dict[str, int | str] | str | None = None
    grp_jobs: int | None = None
    grp_submit_jobs: int | None = None
    max_jobs: int | None = None
    max_submit_jobs: int | None = None
    max_wall_minutes: int | None = None
    max_tres_per_job: dict[str, int | str] | str | None = None
    qos: list[str] | str | None = None
    default_qos: str | None = None

    def applied_to(self, before: AssocLimits) -> AssocLimits:
        """``before`` with this change's fields set (checked as a whole again)."""
        values: dict[str, Any] = before.model_dump()
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None and name == "fairshare":
                value = 1
            if value is None and name == "qos":
                value = ()
            values[name] = value
        return AssocLimits.model_validate(values)


class AccountRequest(BaseModel):
    """An account change: ``create`` (under ``parent``, root if not given), ``modify``
    (its description, organisation, parent, limits) or ``delete``."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "modify", "delete"]
    name: str
    parent: str | None = None
    description: str | None = None
    organization: str | None = None
    values: AssocChange = AssocChange()


class UserRequest(BaseModel):
    """A user's association with an account: ``add`` (with limits), ``modify`` its
    limits, or ``remove`` it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["add", "modify", "remove"]
    user: str
    account: str
    values: AssocChange = AssocChange()


def _check(exc: ValueError) -> InvalidInput:
    if isinstance(exc, ValidationError):
        said = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return InvalidInput(said)
    return InvalidInput(str(exc))


def _account(name: str) -> str:
    try:
        return admin_accounts.check_account_name(name)
    except ValueError as exc:
        raise _check(exc) from exc


def _user(name: str) -> str:
    try:
        return admin_accounts.check_user_name(name)
    except ValueError as exc:
        raise _check(exc) from exc


def _jobs(snapshot: ClusterSnapshot, account: str, user: str | None = None) -> list[Job]:
    return [
        j
        for j in snapshot.jobs
        if j.account == account and j.state in ACTIVE and (user is None or j.user == user)
    ]


def _affected(job: Job) -> AffectedJob:
    return AffectedJob(job.id, job.user, job.name, job.state, job.nodes)


def _waits_on(job: Job) -> str | None:
    reason = job.reason or ""
    return next((f for prefix, f in _REASON_FIELDS if reason.startswith(prefix)), None)


def _looser(before: Any, after: Any) -> bool:
    if isinstance(before, dict):
        return any(k not in after or after[k] > v for k, v in before.items())
    return before is not None and (after is None or after > before)


def limit_effects(
    jobs: list[Job], before: AssocLimits, after: AssocLimits
) -> tuple[list[Job], list[Job]]:
    """Pending jobs this change would let start, and those it would hold back."""
    pending = [j for j in jobs if j.state == "PENDING"]
    released = [
        j
        for j in pending
        if (f := _waits_on(j)) is not None and _looser(getattr(before, f), getattr(after, f))
    ]
    blocked: list[Job] = []
    wall = after.max_wall_minutes
    if wall is not None and wall != before.max_wall_minutes:
        blocked += [
            j for j in pending if j.time_limit_minutes is None or j.time_limit_minutes > wall
        ]
    cap = after.max_jobs
    if cap is not None and cap != before.max_jobs:
        running = Counter(j.user for j in jobs if j.state == "RUNNING")
        blocked += [j for j in pending if running[j.user] >= cap and j not in blocked]
    return released, blocked


def _shown(value: Any) -> str:
    if value is None or value == () or value == {}:
        return "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _diff_notes(before: AssocLimits, after: AssocLimits) -> list[str]:
    return [
        f"{admin_accounts.SET_KEYS[f]}: {_shown(getattr(before, f))} -> {_shown(getattr(after, f))}"
        for f in admin_accounts.changed_fields(before, after)
    ]


def _counts(jobs: list[Job]) -> str:
    pending = sum(j.state == "PENDING" for j in jobs)
    return f"{pending} pending and {len(jobs) - pending} running or other active jobs now"


def _effects(
    jobs: list[Job], before: AssocLimits, after: AssocLimits
) -> tuple[list[str], list[Job]]:
    released, blocked = limit_effects(jobs, before, after)
    notes = [*_diff_notes(before, after), _counts(jobs)]
    if released:
        notes.append("Would let start: " + ", ".join(j.id for j in released))
    if blocked:
        notes.append("Would hold back: " + ", ".join(j.id for j in blocked))
    return notes, [*released, *blocked]


def _values(change: AssocChange, before: AssocLimits) -> AssocLimits:
    try:
        return change.applied_to(before)
    except ValueError as exc:
        raise _check(exc) from exc


def _state(adapter: SlurmAdapter, account: str) -> tuple[AccountInfo, list[Association]] | None:
    """Account ``account``'s values and associations, or None when there is none."""
    info = next(
        (a for a in admin_accounts.read_accounts(adapter.executor) if a.name == account), None
    )
    if info is None:
        return None
    return info, admin_accounts.read_associations(adapter.executor, account)


def _own(account: str, rows: list[Association]) -> Association:
    own = next((a for a in rows if a.user is None), None)
    if own is None:
        raise NotFound(f"Account {account} has no association on this cluster.")
    return own


def plan_account(adapter: SlurmAdapter, snapshot: ClusterSnapshot, request: AccountRequest) -> Plan:
    """The plan of an account change (blocking: reads slurmdbd)."""
    name = _account(request.name)
    state = _state(adapter, name)
    if request.action == "create":
        return _plan_account_create(adapter, name, state, request)
    if state is None:
        raise NotFound(f"There is no account {name}.")
    info, rows = state
    own = _own(name, rows)
    jobs = _jobs(snapshot, name)
    if request.action == "delete":
        if request.values.model_fields_set or request.description or request.parent:
            raise InvalidInput("A delete takes no values.")
        users = sorted(a.user for a in rows if a.user)
        children = sorted(
            a.account
            for a in admin_accounts.read_associations(adapter.executor)
            if a.user is None and a.parent == name
        )
        if users or children:
            raise Conflict(
                f"Account {name} still has "
                + "; ".join(
                    x
                    for x in (
                        f"users {', '.join(users)}" if users else "",
                        f"sub-accounts {', '.join(children)}" if children else "",
                    )
                    if x
                )
                + ": remove them first, so a revert can re-create exactly what was deleted."
            )
        under = own.parent or "root"
        return Plan(
            kind="account.delete",
            target=f"account:{name}",
            summary=f"Delete account {name}",
            commands=(admin_accounts.account_delete(name),),
            affects=tuple(_affected(j) for j in jobs),
            previous={
                "account": info.model_dump(mode="json"),
                "association": own.model_dump(mode="json"),
            },
            revert=(
                admin_accounts.account_create(
                    name, under, info.description, info.organization, own.limits
                ),
            ),
            notes=(
                _counts(jobs),
                "A revert re-creates the account with these values and parent; its "
                "coordinators are not added back.",
            ),
        )
    limits = _values(request.values, own.limits)
    parent = _account(request.parent) if request.parent else own.parent
    if parent is not None and parent != own.parent:
        if parent == name:
            raise InvalidInput(f"Account {name} cannot be its own parent.")
        if _state(adapter, parent) is None:
            raise NotFound(f"There is no account {parent} to move {name} under.")
    try:
        after_info = info.model_copy(
            update={
                "description": request.description
                if request.description is not None
                else info.description,
                "organization": (
                    request.organization.lower()
                    if request.organization is not None
                    else info.organization
                ),
            }
        )
        after = own.model_copy(update={"limits": limits, "parent": parent})
        commands = admin_accounts.account_modify(name, (info, own), (after_info, after))
        undo = admin_accounts.account_modify(name, (after_info, after), (info, own))
    except ValueError as exc:
        raise _check(exc) from exc
    if not commands:
        raise InvalidInput(f"Account {name} already has these values; nothing to change.")
    notes, touched = _effects(jobs, own.limits, limits)
    if parent != own.parent:
        notes.insert(0, f"Parent: {own.parent} -> {parent}")
    if admin_accounts.changed_fields(own.limits, limits):
        notes.append(
            "Users of the account who have no limit of their own take the new value "
            "(slurmdbd copies an account's limits down to them)."
        )
    return Plan(
        kind="account.modify",
        target=f"account:{name}",
        summary=f"Change account {name}",
        commands=commands,
        affects=tuple(_affected(j) for j in touched),
        previous={
            "account": info.model_dump(mode="json"),
            "association": own.model_dump(mode="json"),
        },
        revert=undo,
        notes=tuple(notes),
    )


def _plan_account_create(
    adapter: SlurmAdapter,
    name: str,
    state: tuple[AccountInfo, list[Association]] | None,
    request: AccountRequest,
) -> Plan:
    if state is not None:
        raise Conflict(f"Account {name} already exists; modify it instead.")
    parent = _account(request.parent or "root")
    found = _state(adapter, parent)
    if found is None:
        raise NotFound(f"There is no account {parent} to create {name} under.")
    limits = _values(request.values, AssocLimits())
    try:
        command = admin_accounts.account_create(
            name,
            parent,
            request.description or name,
            request.organization or found[0].organization,
            limits,
        )
    except ValueError as exc:
        raise _check(exc) from exc
    return Plan(
        kind="account.create",
        target=f"account:{name}",
        summary=f"Create account {name} under {parent}",
        commands=(command,),
        previous={"exists": False},
        revert=(admin_accounts.account_delete(name),),
        notes=tuple(_diff_notes(AssocLimits(), limits)),
    )


def plan_user(adapter: SlurmAdapter, snapshot: ClusterSnapshot, request: UserRequest) -> Plan:
    """The plan of a change to user ``request.user``'s association with an account."""
    user, account = _user(request.user), _account(request.account)
    state = _state(adapter, account)
    if state is None:
        raise NotFound(f"There is no account {account}.")
    _, rows = state
    before = next((a for a in rows if a.user == user), None)
    target = f"assoc:{user}@{account}"
    jobs = _jobs(snapshot, account, user)
    if request.action == "add":
        if before is not None:
            raise Conflict(f"{user} is already in account {account}; modify it instead.")
        limits = _values(request.values, AssocLimits())
        return Plan(
            kind="user.add",
            target=target,
            summary=f"Add {user} to account {account}",
            commands=(admin_accounts.user_add(user, account, limits),),
            previous={"exists": False},
            revert=(admin_accounts.user_remove(user, account),),
            notes=tuple(_diff_notes(AssocLimits(), limits)),
        )
    if before is None:
        raise NotFound(f"{user} is not in account {account}.")
    if request.action == "remove":
        if request.values.model_fields_set:
            raise InvalidInput("A remove takes no values.")
        return Plan(
            kind="user.remove",
            target=target,
            summary=f"Remove {user} from account {account}",
            commands=(admin_accounts.user_remove(user, account),),
            affects=tuple(_affected(j) for j in jobs),
            previous={"association": before.model_dump(mode="json")},
            revert=(admin_accounts.user_add(user, account, before.limits),),
            notes=(
                _counts(jobs),
                f"{user} can no longer submit to {account}; a revert adds them back with "
                "these limits.",
            ),
        )
    after = _values(request.values, before.limits)
    command = admin_accounts.user_modify(user, account, before.limits, after)
    undo = admin_accounts.user_modify(user, account, after, before.limits)
    if command is None or undo is None:
        raise InvalidInput(f"{user} in {account} already has these values; nothing to change.")
    notes, touched = _effects(jobs, before.limits, after)
    return Plan(
        kind="user.modify",
        target=target,
        summary=f"Change {user}'s limits in account {account}",
        commands=(command,),
        affects=tuple(_affected(j) for j in touched),
        previous={
            "association": before.model_dump(mode="json"),
            "after": after.model_dump(mode="json"),
        },
        revert=(undo,),
        notes=tuple(notes),
    )
