"""Disk usage alerts: shared data storage and each node's scratch.

Every ``disk_alert_interval`` seconds each replica reads:

- **shared storage**: ``os.statvfs`` of each of ``disk_alert_paths`` (target
  ``path:/data``), by the portal itself;
- **node scratch**: the ``disk_scratch_probe`` command for each node (``{node}``
  replaced; target ``node:NAME``), whose output is ``df -P``-style (the last line's
  size, used and available columns; ``-B1`` or the header's block size). Nodes are
  ``disk_scratch_nodes``, or every node of the current snapshot.
  TODO: with Prometheus configured, read ``node_filesystem_{size,avail}_bytes`` of
  the scratch mount instead of running a probe per node (not built yet).

Each reading becomes a level: ``critical`` at or above the critical threshold,
``warning`` at or above the warning one (defaults 90 % and 75 %, changed by admins
with ``PUT /alerts/disk/thresholds``, per target if need be), ``info`` below, and
``unknown`` when the reading failed. The ``disk_alerts`` table keeps one row per
target: an episode starts (``active_since``) when a target reaches warning, is
told to admins once per level reached (``notified_rank``, claimed with a
conditional UPDATE so two replicas never both tell), and ends (``cleared_at``) when
usage drops below the warning threshold.

Telling admins: TODO. ``services/notifications.py`` stores job events only (its
events and unique key are per job), so there is no admin channel to use yet; an
alert is logged at WARNING level (``hpcportal.services.disk_alerts``) and shown by
``GET /api/v1/alerts/disk``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert, DiskAlertThreshold
from hpcportal.db.session import Database
from hpcportal.errors import PortalError
from hpcportal.services.auth import utcnow
from hpcportal.services.snapshot import SnapshotService

log = logging.getLogger(__name__)

Level = Literal["info", "warning", "critical", "unknown"]
Kind = Literal["shared", "scratch"]
RANK: dict[str, int] = {"unknown": 0, "info": 0, "warning": 1, "critical": 2}
DEFAULT_TARGET = "*"


@dataclass(frozen=True, slots=True)
class Reading:
    target: str
    kind: Kind
    total: int | None = None
    used: int | None = None
    percent: float | None = None
    error: str | None = None


class Thresholds(BaseModel):
    warning_percent: float = Field(gt=0, le=100)
    critical_percent: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warning_percent >= self.critical_percent:
            raise ValueError("warning_percent must be below critical_percent")
        return self


class ThresholdSet(BaseModel):
    """``default`` for every target; ``targets`` overrides it for some
    (``path:/data``, ``node:node001``)."""

    default: Thresholds
    targets: dict[str, Thresholds] = Field(default_factory=dict)

    def for_target(self, target: str) -> Thresholds:
        return self.targets.get(target, self.default)


class DiskAlertOut(BaseModel):
    target: str
    kind: Kind
    level: Level
    percent: float | None
    total_bytes: int | None
    used_bytes: int | None
    error: str | None
    checked_at: datetime
    active_since: datetime | None
    cleared_at: datetime | None


class DiskAlertReport(BaseModel):
    alerts: list[DiskAlertOut]  # warning or critical now
    targets: list[DiskAlertOut]  # every watched target, worst first
    thresholds: ThresholdSet
    watching: bool  # anything configured to watch


@dataclass(frozen=True, slots=True)
class Notice:
    target: str
    level: Level
    percent: float | None


# --- reading usage ------------------------------------------------------------------------


def _percent(total: int, used: int, available: int) -> float:
    usable = used + available
    return round(100.0 * used / usable, 2) if usable > 0 else 0.0


def read_shared(paths: Iterable[str]) -> list[Reading]:
    readings = []
    for path in paths:
        target = f"path:{path}"
        try:
            vfs = os.statvfs(path)
        except OSError as exc:
            readings.append(Reading(target, "shared", error=exc.strerror or str(exc)))
            continue
        total = vfs.f_blocks * vfs.f_frsize
        used = total - vfs.f_bfree * vfs.f_frsize
        available = vfs.f_bavail * vfs.f_frsize
        readings.append(Reading(target, "shared", total, used, _percent(total, used, available)))
    return readings


def parse_df(text: str) -> tuple[int, int, int]:
    """(total, used, available) bytes from ``df -P`` output (its last line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError("no df output")
    block = 1024
    match = re.search(r"(\d+)-blocks", lines[0])
    if match:
        block = int(match.group(1))
    fields = lines[-1].split()
    if len(fields) < 4 or not all(f.isdigit() for f in fields[1:4]):
        raise ValueError(f"unexpected df line {lines[-1][:100]!r}")
    total, used, available = (int(f) * block for f in fields[1:4])
    return total, used, available


def probe_node(argv: Sequence[str], node: str, timeout: float) -> Reading:
    target = f"node:{node}"
    command = [part.replace("{node}", node) for part in argv]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Reading(target, "scratch", error=f"probe failed: {exc}")
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return Reading(target, "scratch", error=f"probe failed: {reason[0][:300]}")
    try:
        total, used, available = parse_df(done.stdout)
    except ValueError as exc:
        return Reading(target, "scratch", error=f"probe output: {exc}")
    return Reading(target, "scratch", total, used, _percent(total, used, available))


def probe_scratch(settings: Settings, nodes: Sequence[str]) -> list[Reading]:
    if not settings.disk_scratch_probe or not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        return list(
            pool.map(
                lambda n: probe_node(settings.disk_scratch_probe, n, settings.disk_probe_timeout),
                nodes,
            )
        )


# --- thresholds ---------------------------------------------------------------------------


def get_thresholds(session: Session, settings: Settings) -> ThresholdSet:
    rows = {r.target: r for r in session.scalars(select(DiskAlertThreshold))}
    default = rows.pop(DEFAULT_TARGET, None)
    return ThresholdSet(
        default=Thresholds(
            warning_percent=default.warning_percent
            if default
            else settings.disk_alert_warning_percent,
            critical_percent=default.critical_percent
            if default
            else settings.disk_alert_critical_percent,
        ),
        targets={
            t: Thresholds(warning_percent=r.warning_percent, critical_percent=r.critical_percent)
            for t, r in rows.items()
        },
    )


def set_thresholds(session: Session, new: ThresholdSet, username: str) -> ThresholdSet:
    """Replace the stored thresholds (the default and every override) with ``new``."""
    now = utcnow()
    session.execute(delete(DiskAlertThreshold))
    for target, values in [(DEFAULT_TARGET, new.default), *new.targets.items()]:
        session.add(
            DiskAlertThreshold(
                target=target[:255],
                warning_percent=values.warning_percent,
                critical_percent=values.critical_percent,
                updated_by=username,
                updated_at=now,
            )
        )
    session.flush()
    return new


def level_for(percent: float | None, limits: Thresholds) -> Level:
    if percent is None:
        return "unknown"
    if percent >= limits.critical_percent:
        return "critical"
    if percent >= limits.warning_percent:
        return "warning"
    return "info"


# --- recording ----------------------------------------------------------------------------


def _apply(row: DiskAlert, level: Level, now: datetime) -> None:
    """Start, keep or end the row's episode for its new level."""
    row.level = level
    if RANK[level] > 0:
        if row.active_since is None:
            row.active_since, row.cleared_at, row.notified_rank = now, None, 0
    elif level == "info" and row.active_since is not None:
        row.active_since, row.cleared_at, row.notified_rank = None, now, 0
    # "unknown" (a failed reading) neither starts nor ends an episode.


def record(
    session: Session, readings: Iterable[Reading], limits: ThresholdSet, now: datetime | None = None
) -> None:
    """Store each reading and the level it gives."""
    now = now or utcnow()
    for reading in readings:
        row = session.get(DiskAlert, reading.target)
        if row is None:
            row = DiskAlert(
                target=reading.target,
                kind=reading.kind,
                level="info",
                notified_rank=0,
                checked_at=now,
            )
            session.add(row)
        row.kind = reading.kind
        row.checked_at = now
        row.error = reading.error
        if reading.percent is not None:
            row.percent, row.total_bytes, row.used_bytes = (
                reading.percent,
                reading.total,
                reading.used,
            )
        level = level_for(reading.percent, limits.for_target(reading.target))
        _apply(row, level, now)
    session.flush()


def reevaluate(session: Session, limits: ThresholdSet, now: datetime | None = None) -> None:
    """Levels again from the stored usage (after the thresholds changed)."""
    now = now or utcnow()
    for row in session.scalars(select(DiskAlert)):
        if row.level != "unknown":
            _apply(row, level_for(row.percent, limits.for_target(row.target)), now)
    session.flush()


def claim_notices(session: Session) -> list[Notice]:
    """Alerts whose level was not told yet in this episode, claimed by this process."""
    notices = []
    for row in session.scalars(select(DiskAlert).where(DiskAlert.active_since.is_not(None))):
        rank = RANK[row.level]
        if rank <= row.notified_rank:
            continue
        result = session.execute(
            update(DiskAlert)
            .where(DiskAlert.target == row.target, DiskAlert.notified_rank < rank)
            .values(notified_rank=rank)
        )
        if getattr(result, "rowcount", 0):
            notices.append(Notice(row.target, cast(Level, row.level), row.percent))
    return notices


def notify_admins(notices: Iterable[Notice]) -> None:
    """TODO: send through the notifications service once it has an admin channel."""
    for notice in notices:
        log.warning(
            "disk usage %s on %s: %s%% used",
            notice.level,
            notice.target,
            "?" if notice.percent is None else f"{notice.percent:.1f}",
        )


def _out(row: DiskAlert) -> DiskAlertOut:
    return DiskAlertOut.model_validate(row, from_attributes=True)


def report(session: Session, settings: Settings) -> DiskAlertReport:
    rows = list(session.scalars(select(DiskAlert)))
    rows.sort(key=lambda r: (-RANK[r.level], -(r.percent or 0.0), r.target))
    targets = [_out(r) for r in rows]
    return DiskAlertReport(
        alerts=[t for t in targets if RANK[t.level] > 0],
        targets=targets,
        thresholds=get_thresholds(session, settings),
        watching=bool(settings.disk_alert_paths or settings.disk_scratch_probe),
    )


# --- the watcher --------------------------------------------------------------------------


class DiskWatcher:
    """Checks usage every ``disk_alert_interval`` seconds while the app runs (only when
    something is configured to watch)."""

    def __init__(
        self, settings: Settings, database: Database, snapshot: SnapshotService | None = None
    ) -> None:
        self.settings = settings
        self.database = database
        self.snapshot = snapshot
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.disk_alert_paths or self.settings.disk_scratch_probe)

    async def start(self) -> None:
        if self.configured and self._task is None:
            self._task = asyncio.create_task(self._run(), name="disk-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a failed check must not stop the watcher
                log.exception("disk usage check failed")
            await asyncio.sleep(self.settings.disk_alert_interval)

    async def nodes(self) -> list[str]:
        if self.settings.disk_scratch_nodes or self.snapshot is None:
            return list(self.settings.disk_scratch_nodes)
        try:
            current = await self.snapshot.current()
        except PortalError:
            return []
        return [node.name for node in current.nodes]

    async def check(self) -> list[Notice]:
        """Read every target now, store the levels, tell admins what is new."""
        nodes = await self.nodes() if self.settings.disk_scratch_probe else []
        return await run_in_threadpool(self.check_sync, nodes)

    def check_sync(self, nodes: Sequence[str]) -> list[Notice]:
        readings = read_shared(self.settings.disk_alert_paths)
        readings += probe_scratch(self.settings, nodes)
        with self.database.session() as session:
            record(session, readings, get_thresholds(session, self.settings))
            notices = claim_notices(session)
        notify_admins(notices)
        return notices
