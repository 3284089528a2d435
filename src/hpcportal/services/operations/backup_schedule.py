"""Scheduled backups: once per ``backup_every_hours``, on the leader only.

Why a row per period (``backup_runs``) and not just "the leader backs up every N
hours": leadership moves. A leader that took over an hour after the last backup must
know the period is done; one that took over from a leader that died *during* the
backup must know it is not. So the leader claims the period in a fenced transaction
(the claim commits only while its token is the lease's), backs up, and marks it done,
fenced again. A claim still ``running`` under an older token belonged to a leader that
lost the lease before finishing, and the new leader takes it over; a ``failed`` one is
tried again after ``RETRY_AFTER``. Retention is applied after each backup.

Written against ``Leader``, the part of ``ha.leadership.Leadership`` it uses; with one
server that is always leader and its fence checks nothing (token 0 here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.models import BackupRun
from hpcportal.db.session import Database
from hpcportal.ha import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.operations.backup import BackupInfo, create_backup, sources_of
from hpcportal.services.operations.retention import Policy, apply_retention

log = logging.getLogger(__name__)

#: A failed period is tried again this long after its last attempt began.
RETRY_AFTER = timedelta(minutes=15)
#: A ``running`` claim older than this is taken over even under the same token (the
#: one server restarted during its backup).
STUCK_AFTER = timedelta(hours=6)
#: How often the scheduler looks whether a period is due.
POLL_SECONDS = 60.0
DEFAULT_CLUSTER_CONFIG = Path("/etc/hpcportal/cluster_config.yaml")

BACKUPS = Counter("hpcportal_scheduled_backups", "Scheduled backups by outcome", ["outcome"])
LAST_SUCCESS = Gauge(
    "hpcportal_backup_last_success_timestamp_seconds",
    "When this replica last finished a scheduled backup (Unix time)",
)


class Leader(Protocol):
    """What the scheduler asks of ``ha.leadership.Leadership``."""

    replica_id: str

    def is_leader(self) -> bool: ...

    def current_token(self) -> int | None: ...

    def fence(self, session: Session) -> None: ...


def period_start(moment: datetime, every: timedelta) -> datetime:
    """The start of the period holding ``moment``: windows from the Unix epoch, UTC
    (24 hours: midnight UTC)."""
    seconds = every.total_seconds()
    start = int(moment.timestamp() // seconds * seconds)
    return datetime.fromtimestamp(start, UTC)


def cluster_config_path() -> Path | None:
    """cluster_config.yaml as ``hpcportal cluster`` finds it without ``--config``."""
    named = os.environ.get("HPCPORTAL_CLUSTER_CONFIG")
    for candidate in (Path(named) if named else None, DEFAULT_CLUSTER_CONFIG):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Claim:
    period: datetime
    token: int


class BackupScheduler(PeriodicPart):
    """The background part: a loop that backs up when a period is due and we lead."""

    loop_name = "scheduled-backups"
    failed = "scheduled backup round failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        leader: Leader,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self.database = database
        self.leader = leader
        self.clock = clock
        self.poll_seconds = poll_seconds

    def interval(self) -> float:
        return self.poll_seconds

    @property
    def enabled(self) -> bool:
        return self.settings.backup_dir is not None and self.settings.backup_every_hours > 0

    @property
    def every(self) -> timedelta:
        return timedelta(hours=self.settings.backup_every_hours)

    async def tick(self) -> BackupInfo | None:
        """Back up if we lead and this period has no backup yet; the backup made, or None."""
        if not self.enabled or not self.leader.is_leader():
            return None
        now = self.clock()
        claim = await run_in_threadpool(self.claim, period_start(now, self.every), now)
        if claim is None:
            return None
        try:
            made = await run_in_threadpool(self._backup, now)
        except Exception as exc:
            BACKUPS.labels("failed").inc()
            log.exception("scheduled backup for %s failed", claim.period.isoformat())
            await run_in_threadpool(self.finish, claim, "failed", None, str(exc)[:2000])
            return None
        BACKUPS.labels("done").inc()
        LAST_SUCCESS.set(made.manifest.created_at.timestamp() if made.manifest else 0)
        await run_in_threadpool(self.finish, claim, "done", str(made.path), None)
        log.info("scheduled backup %s", made.path)
        return made

    def _backup(self, now: datetime) -> BackupInfo:
        backup_dir = self.settings.backup_dir
        assert backup_dir is not None
        sources = sources_of(self.settings, cluster_config_path())
        made = create_backup(self.settings, backup_dir, sources, now)
        policy = Policy(
            self.settings.backup_keep_daily,
            self.settings.backup_keep_weekly,
            self.settings.backup_keep_monthly,
        )
        apply_retention(backup_dir, policy)
        return made

    def claim(self, period: datetime, now: datetime) -> Claim | None:
        """Take the period's row for this leader, fenced; None if it is not ours to do."""
        token = self.leader.current_token() or 0
        with self.database.session() as session:
            self.leader.fence(session)
            row = session.get(BackupRun, period)
            if row is None:
                row = BackupRun(period_start=period, state="running", holder="", token=token)
                session.add(row)
            elif row.state == "done":
                return None
            elif (
                row.state == "running" and row.token >= token and now - row.started_at < STUCK_AFTER
            ):
                return None  # being done (by us, or a leader at least as new)
            elif row.state == "failed" and now - row.started_at < RETRY_AFTER:
                return None
            row.state, row.holder, row.token = "running", self.leader.replica_id, token
            row.started_at, row.finished_at, row.path, row.error = now, None, None, None
        return Claim(period, token)

    def finish(self, claim: Claim, state: str, path: str | None, error: str | None) -> None:
        """Record the outcome, fenced: a leader that lost the lease records nothing."""
        try:
            with self.database.session() as session:
                self.leader.fence(session)
                row = session.get(BackupRun, claim.period)
                if row is None or row.token != claim.token:
                    return
                row.state, row.path, row.error = state, path, error
                row.finished_at = self.clock()
        except LeadershipLost:
            log.warning(
                "the backup of %s is not recorded: this replica no longer leads", claim.period
            )
