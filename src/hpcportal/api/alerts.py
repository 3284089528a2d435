"""Disk usage alerts: shared storage and node scratch (``services/disk_alerts.py``).

The watcher runs with the app (this router's lifespan), only when something is
configured to watch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.deps import (
    AdminUser,
    ClientAddress,
    CurrentUser,
    DbDep,
    SettingsDep,
    strict_query,
)
from hpcportal.services import audit, disk_alerts
from hpcportal.services.disk_alerts import DiskAlertReport, DiskWatcher, ThresholdSet


@asynccontextmanager
async def watch_disks(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    watcher = DiskWatcher(state.settings, state.db, getattr(state, "snapshot", None))
    state.disk_watcher = watcher
    await watcher.start()
    try:
        yield
    finally:
        await watcher.stop()


router = APIRouter(prefix="/alerts/disk", tags=["alerts"], lifespan=watch_disks)


async def get_watcher(request: Request) -> DiskWatcher:
    return cast(DiskWatcher, request.app.state.disk_watcher)


WatcherDep = Annotated[DiskWatcher, Depends(get_watcher)]


@router.get("", response_model=DiskAlertReport, dependencies=[strict_query()])
def list_disk_alerts(_: CurrentUser, db: DbDep, settings: SettingsDep) -> DiskAlertReport:
    """Active alerts (warning or critical), every watched target with its last usage,
    and the thresholds."""
    return disk_alerts.report(db, settings)


@router.put("/thresholds", response_model=ThresholdSet, dependencies=[strict_query()])
def put_thresholds(
    body: ThresholdSet, who: AdminUser, db: DbDep, address: ClientAddress
) -> ThresholdSet:
    """Replace the thresholds (admins): ``{"default": {"warning_percent": 75,
    "critical_percent": 90}, "targets": {"node:node001": {...}}}``. Stored levels are
    re-evaluated at once against the last usage seen."""
    stored = disk_alerts.set_thresholds(db, body, who.username)
    disk_alerts.reevaluate(db, stored)
    audit.record(
        db,
        username=who.username,
        action="alerts.disk.thresholds",
        target=None,
        result="ok",
        detail=body.model_dump_json()[:4000],
        address=address,
    )
    return stored


@router.post("/check", response_model=DiskAlertReport, dependencies=[strict_query()])
async def check_now(
    _: AdminUser, watcher: WatcherDep, db: DbDep, settings: SettingsDep
) -> DiskAlertReport:
    """Check every target now (admins), rather than at the next interval."""
    await watcher.check()
    db.expire_all()
    return await run_in_threadpool(disk_alerts.report, db, settings)
