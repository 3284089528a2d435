"""Disk usage alerts: shared storage, node scratch and your own quota
(``services/disk_alerts.py``).

The watcher runs with the app (started and stopped by the app factory's task
runner), only when something is configured to watch; what it tells is stored as
notifications and pushed over the live hub.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from hpcportal.composition import services_of
from hpcportal.dependencies import (
    AdminUser,
    ClientAddress,
    CurrentUser,
    DbDep,
    SettingsDep,
    strict_query,
)
from hpcportal.services import audit, disk_alerts
from hpcportal.services.disk_alerts import DiskAlertReport, DiskWatcher, ThresholdSet

router = APIRouter(prefix="/alerts/disk", tags=["alerts"])


async def get_watcher(request: Request) -> DiskWatcher:
    """The process's watcher; the app factory builds, starts and stops it."""
    return services_of(request).disk_watcher


WatcherDep = Annotated[DiskWatcher, Depends(get_watcher)]


@router.get("", response_model=DiskAlertReport, dependencies=[strict_query()])
def list_disk_alerts(who: CurrentUser, db: DbDep, settings: SettingsDep) -> DiskAlertReport:
    """Active alerts of shared storage and node scratch (warning or critical), every
    such target with its last usage, ``yours`` (your own quota and file areas), and
    the thresholds."""
    return disk_alerts.report(db, settings, who)


@router.put("/thresholds", response_model=ThresholdSet, dependencies=[strict_query()])
async def put_thresholds(
    body: ThresholdSet, who: AdminUser, watcher: WatcherDep, address: ClientAddress
) -> ThresholdSet:
    """Replace the thresholds (admins): ``{"default": {"warning_percent": 75,
    "critical_percent": 90}, "targets": {"node:node001": {...}, "user:*": {...}}}``.
    Stored levels are re-evaluated at once against the last usage seen, and what
    that starts, escalates or ends is told as at a check."""

    def record_audit(session: Session) -> None:
        detail = body.model_dump_json()[:4000]
        event = audit.Event.of(who, "alerts.disk.thresholds", None, address, None, detail)
        audit.add(session, event)

    result = await run_in_threadpool(watcher.change_thresholds, body, who.username, record_audit)
    watcher.push(result)
    return body


@router.post("/check", response_model=DiskAlertReport, dependencies=[strict_query()])
async def check_now(
    who: AdminUser, watcher: WatcherDep, db: DbDep, settings: SettingsDep
) -> DiskAlertReport:
    """Check every target now (admins), rather than at the next interval."""
    await watcher.check()
    db.expire_all()
    return await run_in_threadpool(disk_alerts.report, db, settings, who)
