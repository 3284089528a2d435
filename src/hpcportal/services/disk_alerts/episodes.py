"""Thresholds and the episode state machine: each reading becomes a level, stored one
row per target; an episode starts at warning, is told once per level reached and
ends below warning (claimed with conditional UPDATEs so two replicas never both tell)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import cast

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert, DiskAlertThreshold
from hpcportal.services.auth import utcnow
from hpcportal.services.disk_alerts.model import (
    DEFAULT_TARGET,
    RANK,
    Level,
    Notice,
    Reading,
    Thresholds,
    ThresholdSet,
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
    """Start, keep or end the row's episode for its new level.

    Ending keeps ``notified_rank``: an episode that was told is told to be over by
    ``claim_notices``, which resets it."""
    row.level = level
    if RANK[level] > 0:
        if row.active_since is None:
            row.active_since, row.cleared_at, row.notified_rank = now, None, 0
            row.episode = (row.episode or 0) + 1
    elif level == "info" and row.active_since is not None:
        row.active_since, row.cleared_at = None, now
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
                episode=0,
                checked_at=now,
            )
            session.add(row)
        row.kind = reading.kind
        row.username = reading.username
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


def forget_user_targets(session: Session, username: str, keep: Iterable[str]) -> None:
    """Drop the user's targets not read this round (an area or a quota that is gone)."""
    session.execute(
        delete(DiskAlert).where(DiskAlert.username == username, DiskAlert.target.not_in(list(keep)))
    )


def _notice(row: DiskAlert, level: Level) -> Notice:
    return Notice(
        row.target, level, row.percent, row.kind, row.username, row.episode or 0,
        row.used_bytes, row.total_bytes,
    )  # fmt: skip


def claim_notices(session: Session) -> list[Notice]:
    """What was not told yet, claimed by this process with conditional UPDATEs (so
    of several replicas only one tells): a level reached during an active episode,
    above what was told; and the end of an episode that was told (level ``info``)."""
    notices = []
    for row in session.scalars(select(DiskAlert).where(DiskAlert.active_since.is_not(None))):
        rank = RANK[row.level]
        if rank <= row.notified_rank:
            continue
        result = session.execute(
            update(DiskAlert)
            .where(DiskAlert.target == row.target, DiskAlert.notified_rank < rank)
            .values(notified_rank=rank)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            notices.append(_notice(row, cast(Level, row.level)))
    ended = select(DiskAlert).where(DiskAlert.active_since.is_(None), DiskAlert.notified_rank > 0)
    for row in session.scalars(ended):
        result = session.execute(
            update(DiskAlert)
            .where(
                DiskAlert.target == row.target,
                DiskAlert.active_since.is_(None),
                DiskAlert.notified_rank > 0,
            )
            .values(notified_rank=0)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            notices.append(_notice(row, "info"))
    session.expire_all()
    return notices
