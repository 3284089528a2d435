"""The plan-check-apply sequence every admin change goes through, for the API's
routes and the admin pages alike.

A change is planned on what Slurm has now (``plan_of``), checked against the argv the
person was shown (``apply_checked``: 409 when they differ) and run as that person by a
``Run`` (``runner``: ``plan.apply`` or an area's own apply, with who, why and from
where bound). What to refresh afterwards (the snapshot, the sacctmgr cache) stays with
the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from hpcportal.services.admin.plan import Applied, Plan, check_expected
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm.adapter import SlurmAdapter

Request = TypeVar("Request")
#: Runs a checked plan as the person (blocking; called in the thread pool).
Run = Callable[[Plan], Applied]


def runner(
    apply: Callable[..., Applied],
    *parts: Any,
    who: Principal,
    why: str,
    address: str | None,
) -> Run:
    """``apply(*parts, plan, who, why, address)`` as a function of the plan."""
    return lambda plan: apply(*parts, plan, who, why, address)


async def plan_of(
    planner: Callable[[SlurmAdapter, ClusterSnapshot, Request], Plan],
    adapter: SlurmAdapter,
    snapshot: SnapshotService,
    request: Request,
) -> Plan:
    """``planner`` on the current snapshot, in the thread pool (it reads Slurm)."""
    snap = await snapshot.current()
    return await run_in_threadpool(planner, adapter, snap, request)


async def apply_checked(plan: Plan, expect: list[list[str]] | None, run: Run) -> Applied:
    """409 unless ``plan`` runs the argv shown (``expect``; None: unchecked); else ``run`` it."""
    check_expected(plan, expect)
    return await run_in_threadpool(run, plan)
