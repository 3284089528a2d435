"""Scheduled backups run on the leader, once per period across a leader change.

Two replicas' real ``Leadership`` objects share one database (SQLite, PostgreSQL,
MariaDB); the schedulers run on a fake clock, and the backups are real (SQLite
database dumps land in a temp folder).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.models import BackupRun
from hpcportal.db.session import Database
from hpcportal.ha import Leadership
from hpcportal.services.operations.backup import list_backups
from hpcportal.services.operations.backup_schedule import BackupScheduler, period_start

DAY_ONE = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def runs(database: Database) -> list[tuple[datetime, str, str]]:
    with database.session() as session:
        rows = session.scalars(select(BackupRun).order_by(BackupRun.period_start))
        return [(r.period_start, r.state, r.holder) for r in rows]


def test_period_start_is_utc_midnight_for_a_day() -> None:
    assert period_start(DAY_ONE, timedelta(hours=24)) == datetime(2026, 12, 2, tzinfo=UTC)
    assert period_start(DAY_ONE, timedelta(hours=6)) == datetime(2026, 12, 2, tzinfo=UTC)
    later = DAY_ONE + timedelta(hours=4)
    assert period_start(later, timedelta(hours=6)) == datetime(2026, 12, 2, 6, tzinfo=UTC)


def test_one_backup_per_period_on_the_leader_across_a_takeover(
    database: Database, db_settings: Settings, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    settings = db_settings.model_copy(
        update={"backup_dir": backups, "secret_key_file": tmp_path / "secrets" / "portal.key"}
    )
    clock = Clock(DAY_ONE)

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = BackupScheduler(settings, database, first, clock=clock)
        two = BackupScheduler(settings, database, second, clock=clock)
        try:
            await first.start()
            await second.start()
            assert first.is_leader() and not second.is_leader()

            assert await two.tick() is None  # not the leader
            made = await one.tick()
            assert made is not None and made.path.is_dir()
            clock.now += timedelta(hours=1)
            assert await one.tick() is None  # this period is done

            await first.stop()  # the leader leaves (releases the lease)
            await second.tick()
            assert second.is_leader()
            clock.now += timedelta(hours=1)
            assert await two.tick() is None  # the new leader knows the period is done

            clock.now = DAY_ONE + timedelta(days=1)
            assert await two.tick() is not None
            assert await one.tick() is None  # the old leader does nothing
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert len(list_backups(backups)) == 2
    assert runs(database) == [
        (datetime(2026, 12, 2, tzinfo=UTC), "done", "r1"),
        (datetime(2026, 12, 3, tzinfo=UTC), "done", "r2"),
    ]


def test_a_backup_left_running_by_a_lost_leader_is_redone_by_the_next(
    database: Database, db_settings: Settings, tmp_path: Path
) -> None:
    settings = db_settings.model_copy(
        update={"backup_dir": tmp_path / "backups", "secret_key_file": tmp_path / "k" / "key"}
    )
    clock = Clock(DAY_ONE)

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = BackupScheduler(settings, database, first, clock=clock)
        two = BackupScheduler(settings, database, second, clock=clock)
        try:
            await first.start()
            # r1 claims the period, then loses the lease before its backup finishes.
            claim = one.claim(period_start(DAY_ONE, one.every), DAY_ONE)
            assert claim is not None
            await first.stop()
            await second.start()
            assert second.is_leader()
            assert await two.tick() is not None  # a claim of an older token: redone
            one.finish(claim, "done", "/nowhere", None)  # fenced: refused
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    ((period, state, holder),) = runs(database)
    assert (state, holder) == ("done", "r2")
    with database.session() as session:
        row = session.get(BackupRun, period)
        assert row is not None and row.path != "/nowhere"


def test_no_backup_dir_means_no_schedule(database: Database, db_settings: Settings) -> None:
    scheduler = BackupScheduler(db_settings, database, Leadership.single())
    assert not scheduler.enabled
    assert asyncio.run(scheduler.tick()) is None
    assert runs(database) == []
