"""The admin console's scheduler health and audit API (read-only).

Scheduler figures come from the samples the leader stores (``sdiag`` every
``sdiag_sample_seconds``), never from a Slurm call per request; pending reasons from the
shared snapshot. The audit view is the audit log with each applied admin change's
reason and commands. Only the portal's admin role sees these routes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.params import Moment, PageNumber, PageSize
from hpcportal.composition import services_of
from hpcportal.dependencies import AdminUser, DatabaseDep, SettingsDep, SnapshotDep
from hpcportal.services.admin import audit as admin_audit
from hpcportal.services.admin import scheduler
from hpcportal.services.admin.audit import AuditFilter, AuditRows, Outcome
from hpcportal.services.admin.scheduler import HistoryPoint, SchedulerHealth

router = APIRouter(prefix="/admin", tags=["admin"])
#: History goes back at most a week (the default retention).
Hours = Annotated[float, Query(gt=0, le=24 * 7)]


def sampler_error(request: Request) -> str | None:
    """This replica's last failure to read sdiag (only the leader reads it)."""
    sampler = services_of(request).sdiag_sampler
    return sampler.last_error if sampler is not None else None


@router.get("/scheduler", response_model=SchedulerHealth)
async def scheduler_health(
    request: Request,
    _: AdminUser,
    database: DatabaseDep,
    snapshot: SnapshotDep,
    settings: SettingsDep,
) -> SchedulerHealth:
    """The latest sdiag figures, the heaviest RPC users, pending reasons by partition."""
    snap = await snapshot.current()
    error = sampler_error(request)
    return await run_in_threadpool(scheduler.health, database, snap, settings, error)


@router.get("/scheduler/history", response_model=list[HistoryPoint])
async def scheduler_history(
    _: AdminUser, database: DatabaseDep, hours: Hours = 6.0
) -> list[HistoryPoint]:
    """Cycle times, backfill depth, agent queue and threads of each sample, oldest first."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    return await run_in_threadpool(scheduler.history, database, since)


@router.get("/audit", response_model=AuditRows)
async def audit_log(
    _: AdminUser,
    database: DatabaseDep,
    user: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    outcome: Outcome | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    page: PageNumber = 1,
    limit: PageSize = 50,
) -> AuditRows:
    """The audit log, newest first: ``kind`` and ``target`` match a prefix (``admin.``,
    ``node:``); an applied admin change carries its reason and the argv that ran."""
    where = AuditFilter(
        user=user or None,
        kind=kind or None,
        target=target or None,
        outcome=outcome,
        since=since,
        until=until,
    )
    return await run_in_threadpool(admin_audit.audit_rows, database, where, page, limit)
