"""The admin console's accounts API: the account tree with its associations, and
plan/apply of account changes and of users' associations with accounts (revert is
``/admin/changes``, for portal admins).

Open to portal admins and to Slurm coordinators (``sacctmgr show user withcoord``):
an admin sees every account, a coordinator the accounts they coordinate; anyone else
gets 403 before anything runs. Every change runs as the person's own Unix user, so
slurmdbd decides (a coordinator is refused for an account they do not coordinate:
403 with Slurm's reason). Apply re-plans and runs only the argv the person saw
(``expect``, required), else 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from hpcportal.db.session import Database
from hpcportal.dependencies import (
    AdapterDep,
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    SnapshotDep,
)
from hpcportal.services.admin import account_access
from hpcportal.services.admin import accounts as admin_accounts
from hpcportal.services.admin.account_access import AccountsView
from hpcportal.services.admin.accounts import AccountRequest, UserRequest
from hpcportal.services.admin.flow import apply_checked, plan_of, runner
from hpcportal.services.admin.plan import Applied, ApplyBody, Plan, PlanView
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm.adapter import SlurmAdapter

Change = TypeVar("Change", AccountRequest, UserRequest)

router = APIRouter(prefix="/admin/accounts", tags=["admin"])


class AccountApply(ApplyBody):
    """An account change to apply: the change, why, and the argv the person saw."""

    change: AccountRequest
    expect: list[list[str]]


class UserApply(ApplyBody):
    """A change of a user's association to apply: the change, why, the argv seen."""

    change: UserRequest
    expect: list[list[str]]


async def _apply(
    planner: Callable[[SlurmAdapter, ClusterSnapshot, Change], Plan],
    change: Change,
    body: ApplyBody,
    who: Principal,
    parts: tuple[SlurmAdapter, SnapshotService, Database, str | None],
) -> Applied:
    """Plan ``change`` for a manager, check ``body.expect``, apply it as ``who`` with
    ``account_access.apply`` (slurmdbd's silent no-op read as its refusal)."""
    adapter, snapshot, database, address = parts
    await run_in_threadpool(account_access.check_may_manage, adapter, who)
    plan = await plan_of(planner, adapter, snapshot, change)
    run = runner(
        account_access.apply,
        adapter.admin,
        adapter,
        database,
        who=who,
        why=body.reason,
        address=address,
    )
    applied = await apply_checked(plan, body.expect, run)
    adapter.cache.clear()  # /accounts reads sacctmgr through the short cache
    return applied


@router.get("", response_model=AccountsView)
async def accounts_tree(
    who: CurrentUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> AccountsView:
    """The account tree (parent first) with each account's and user's association
    limits, coordinators and active jobs: every account for a portal admin, those
    coordinated for a Slurm coordinator."""
    snap = await snapshot.current()
    return await run_in_threadpool(account_access.view, adapter, snap, who)


@router.post("/plan", response_model=PlanView)
async def plan_account_change(
    change: AccountRequest, who: CurrentUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> PlanView:
    """The sacctmgr commands an account create, modify or delete would run, the
    values before and after, the jobs it touches, and the revert."""
    await run_in_threadpool(account_access.check_may_manage, adapter, who)
    return PlanView.of(await plan_of(admin_accounts.plan_account, adapter, snapshot, change))


@router.post("/apply", response_model=Applied)
async def apply_account_change(
    body: AccountApply,
    who: CurrentUser,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Apply an account change as you, with a reason (audited; revertible once)."""
    parts = (adapter, snapshot, database, address)
    return await _apply(admin_accounts.plan_account, body.change, body, who, parts)


@router.post("/users/plan", response_model=PlanView)
async def plan_user_change(
    change: UserRequest, who: CurrentUser, adapter: AdapterDep, snapshot: SnapshotDep
) -> PlanView:
    """The sacctmgr command that adds a user to an account (with limits), changes
    their limits or removes them, the jobs it touches, and the revert."""
    await run_in_threadpool(account_access.check_may_manage, adapter, who)
    return PlanView.of(await plan_of(admin_accounts.plan_user, adapter, snapshot, change))


@router.post("/users/apply", response_model=Applied)
async def apply_user_change(
    body: UserApply,
    who: CurrentUser,
    adapter: AdapterDep,
    snapshot: SnapshotDep,
    database: DatabaseDep,
    address: ClientAddress,
) -> Applied:
    """Apply a change of a user's association as you, with a reason (audited)."""
    parts = (adapter, snapshot, database, address)
    return await _apply(admin_accounts.plan_user, body.change, body, who, parts)
