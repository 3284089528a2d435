"""The watcher: every ``disk_alert_interval`` seconds read, record and tell."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert
from hpcportal.db.session import Database
from hpcportal.errors import PortalError
from hpcportal.lifecycle import cancel_task
from hpcportal.runas import RunAs
from hpcportal.services.disk_alerts.episodes import (
    claim_notices,
    forget_user_targets,
    get_thresholds,
    record,
    reevaluate,
    set_thresholds,
)
from hpcportal.services.disk_alerts.model import (
    MAX_WORKERS,
    PROMETHEUS_TARGET,
    QUOTA_RETRY_SECONDS,
    Notice,
    Reading,
    ThresholdSet,
)
from hpcportal.services.disk_alerts.readers import (
    probe_scratch,
    read_prometheus,
    read_shared,
    read_user,
    user_readings,
)
from hpcportal.services.disk_alerts.recipients import tell, watching
from hpcportal.services.identity import Principal, lookup_principal
from hpcportal.services.notifications import (
    Delivery,
)
from hpcportal.services.snapshot import SnapshotService

log = logging.getLogger(__package__)  # one logger name for the whole package

# --- the watcher --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    notices: list[Notice]
    deliveries: list[Delivery]


class DiskWatcher:
    """Checks usage every ``disk_alert_interval`` seconds while the app runs (only when
    something is configured to watch), and pushes what it tells with ``deliver``
    (``LiveHub.deliver``: called on the event loop)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        snapshot: SnapshotService | None = None,
        *,
        runas: RunAs | None = None,
        deliver: Callable[[Iterable[Delivery]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.snapshot = snapshot
        self.runas = runas
        self.deliver = deliver
        self._task: asyncio.Task[None] | None = None
        #: With ``disk_user_alerts = "quota"``, when no user's quota could be known
        #: (the ``quota`` command is not installed), users are not read again before.
        self._quota_retry_at = 0.0
        #: With several replicas: only the leader checks (``leading``), and its writes
        #: run behind its fence (``ha.Leadership.fence``).
        self.leading: Callable[[], bool] = lambda: True
        self.fence: Callable[[Session], None] | None = None

    @property
    def configured(self) -> bool:
        return watching(self.settings)

    @property
    def watches_users(self) -> bool:
        return self.settings.disk_user_alerts != "off" and self.runas is not None

    async def start(self) -> None:
        if self.configured and self._task is None:
            self._task = asyncio.create_task(self._run(), name="disk-alerts")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if self.leading():
                    await self.check()
            except Exception:  # a failed check must not stop the watcher
                log.exception("disk usage check failed")
            await asyncio.sleep(self.settings.disk_alert_interval)

    async def _current_snapshot(self) -> Any:
        if self.snapshot is None:
            return None
        try:
            return await self.snapshot.current()
        except PortalError:
            return None

    async def nodes(self) -> list[str]:
        if self.settings.disk_scratch_nodes or self.snapshot is None:
            return list(self.settings.disk_scratch_nodes)
        current = await self._current_snapshot()
        return [node.name for node in current.nodes] if current is not None else []

    async def job_owners(self) -> list[str]:
        current = await self._current_snapshot()
        return sorted({job.user for job in current.jobs}) if current is not None else []

    async def check(self) -> list[Notice]:
        """Read every target now, store the levels, tell what is new (and push it)."""
        scratch = bool(self.settings.disk_scratch_probe or self.settings.prometheus_url)
        nodes = await self.nodes() if scratch else []
        owners: list[str] = []
        if self.watches_users and not self.settings.disk_user_alert_users:
            owners = await self.job_owners()
        result = await run_in_threadpool(self.check_sync, nodes, owners)
        self.push(result)
        return result.notices

    def push(self, result: CheckResult) -> None:
        """Push what was stored (after its commit), on the event loop."""
        if self.deliver is not None and result.deliveries:
            self.deliver(result.deliveries)

    def change_thresholds(
        self,
        new: ThresholdSet,
        username: str,
        also: Callable[[Session], None] | None = None,
    ) -> CheckResult:
        """Store ``new`` thresholds, re-evaluate the stored usage against them and tell
        what that starts, escalates or ends; ``also`` runs in the same transaction
        (the audit entry). Blocking: run it in a worker thread, then ``push``."""
        with self.database.session() as session:
            stored = set_thresholds(session, new, username)
            reevaluate(session, stored)
            if also is not None:
                also(session)
            notices = claim_notices(session)
            deliveries = tell(session, self.settings, notices, stored)
        return CheckResult(notices, deliveries)

    def users(self, owners: Sequence[str]) -> list[Principal]:
        """Whose storage to read: configured users or ``owners``, and first of all
        those with an active alert (so that it can clear); only users who may log in."""
        with self.database.session() as session:
            active = session.scalars(
                select(DiskAlert.username).where(
                    DiskAlert.username.is_not(None),
                    or_(DiskAlert.active_since.is_not(None), DiskAlert.notified_rank > 0),
                )
            ).all()
        chosen = self.settings.disk_user_alert_users or owners
        wanted = list(dict.fromkeys([*sorted(u for u in active if u), *chosen]))
        principals = []
        for username in wanted[: self.settings.disk_user_alert_max_users]:
            who = lookup_principal(username, self.settings.admin_group)
            if who is not None and who.uid >= self.settings.min_uid:
                principals.append(who)
        return principals

    def read_users(self, owners: Sequence[str]) -> dict[str, list[Reading]]:
        """Each user's readings (users whose read failed are left out)."""
        if not self.watches_users or self.runas is None:
            return {}
        runas, settings = self.runas, self.settings
        quota_only = settings.disk_user_alerts == "quota"
        if quota_only and time.monotonic() < self._quota_retry_at:
            return {}
        principals = self.users(owners)
        if not principals:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(principals))) as pool:
            found = list(pool.map(lambda who: read_user(settings, runas, who), principals))
        usages = {
            who.username: usage
            for who, usage in zip(principals, found, strict=True)
            if usage is not None
        }
        if quota_only and usages and not any(u.quota_known for u in usages.values()):
            note = next(iter(usages.values())).quota_note
            log.info("no quota is known (%s); users are checked again in an hour", note)
            self._quota_retry_at = time.monotonic() + QUOTA_RETRY_SECONDS
        return {
            user: user_readings(user, usage, settings.disk_user_alerts)
            for user, usage in usages.items()
        }

    def check_sync(self, nodes: Sequence[str], owners: Sequence[str] = ()) -> CheckResult:
        settings = self.settings
        readings = read_shared(settings.disk_alert_paths)
        if settings.prometheus_url:
            readings += read_prometheus(settings, nodes)
        else:
            readings += probe_scratch(settings, nodes)
        per_user = self.read_users(owners)
        for user_readings_ in per_user.values():
            readings += user_readings_
        with self.database.session() as session:
            if self.fence is not None:
                self.fence(session)
            if settings.prometheus_url and not any(r.target == PROMETHEUS_TARGET for r in readings):
                session.execute(delete(DiskAlert).where(DiskAlert.target == PROMETHEUS_TARGET))
            for username, mine in per_user.items():
                forget_user_targets(session, username, [r.target for r in mine])
            limits = get_thresholds(session, settings)
            record(session, readings, limits)
            notices = claim_notices(session)
            deliveries = tell(session, settings, notices, limits)
        return CheckResult(notices, deliveries)
