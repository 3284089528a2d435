"""Scheduler statistics are sampled on the leader only, fenced, and pruned.

Two replicas' real ``Leadership`` objects share one database (SQLite, PostgreSQL,
MariaDB). Each replica's sampler reads a recorded ``sdiag`` (22.05) through a source
that counts its calls: Slurm is asked once per interval by the leader alone.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.models import SdiagSample
from hpcportal.db.session import Database
from hpcportal.ha import Leadership, LeadershipLost
from hpcportal.services.admin import scheduler
from hpcportal.services.admin.scheduler import SdiagSampler
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import parse, sdiag
from hpcportal.slurm.sdiag import SchedulerStats

FIXTURES = Path(__file__).parents[1] / "fixtures" / "slurm"
START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorded:
    """sdiag as 22.05 printed it, counting how often it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def scheduler_stats(self) -> SchedulerStats:
        self.calls += 1
        return sdiag.parse_text((FIXTURES / "22.05" / "sdiag.txt").read_bytes())


def stored(database: Database) -> list[datetime]:
    with database.session() as session:
        return list(session.scalars(select(SdiagSample.at).order_by(SdiagSample.at)))


def test_only_the_leader_samples_and_a_lost_leader_writes_nothing(
    database: Database, db_settings: Settings
) -> None:
    clock = Clock(START)
    one_source, two_source = Recorded(), Recorded()

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = SdiagSampler(db_settings, database, one_source, first, clock=clock)
        two = SdiagSampler(db_settings, database, two_source, second, clock=clock)
        try:
            await first.start()
            await second.start()
            assert first.is_leader() and not second.is_leader()
            for _ in range(3):
                assert await two.tick() is None
                assert await one.tick() is not None
                clock.now += timedelta(seconds=60)
            assert (one_source.calls, two_source.calls) == (3, 0)

            reading = one_source.scheduler_stats()
            await first.stop()  # the leader leaves
            with pytest.raises(LeadershipLost):
                one.store(reading, clock())  # its fence refuses a late write
            assert await one.tick() is None  # and it no longer asks Slurm
            await second.tick()
            assert second.is_leader()
            assert await two.tick() is not None
            assert (one_source.calls, two_source.calls) == (4, 1)
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert stored(database) == [START + timedelta(seconds=60 * n) for n in range(4)]


def test_samples_past_retention_are_deleted(database: Database, db_settings: Settings) -> None:
    settings = db_settings.model_copy(update={"sdiag_retention_days": 1.0})
    clock = Clock(START)
    sampler = SdiagSampler(settings, database, Recorded(), Leadership.single(), clock=clock)
    asyncio.run(sampler.tick())
    clock.now += timedelta(hours=12)
    asyncio.run(sampler.tick())
    clock.now += timedelta(hours=13)  # the first is now 25 hours old
    asyncio.run(sampler.tick())
    assert stored(database) == [START + timedelta(hours=12), START + timedelta(hours=25)]


def test_zero_seconds_means_no_sampling(database: Database, db_settings: Settings) -> None:
    settings = db_settings.model_copy(update={"sdiag_sample_seconds": 0})
    source = Recorded()
    sampler = SdiagSampler(settings, database, source, Leadership.single())
    assert asyncio.run(sampler.tick()) is None
    assert source.calls == 0 and stored(database) == []


def test_a_refused_sdiag_is_kept_as_the_samplers_error(
    database: Database, db_settings: Settings
) -> None:
    class Refused:
        def scheduler_stats(self) -> SchedulerStats:
            from hpcportal.errors import SlurmPermissionDenied

            raise SlurmPermissionDenied("Slurm refused: Access/permission denied")

    sampler = SdiagSampler(db_settings, database, Refused(), Leadership.single())
    assert asyncio.run(sampler.tick()) is None
    assert sampler.last_error is not None and "permission denied" in sampler.last_error
    assert stored(database) == []


def test_latest_history_and_top_users_read_back(database: Database, db_settings: Settings) -> None:
    clock = Clock(START)
    sampler = SdiagSampler(db_settings, database, Recorded(), Leadership.single(), clock=clock)
    for _ in range(3):
        asyncio.run(sampler.tick())
        clock.now += timedelta(minutes=1)
    found = scheduler.latest(database)
    assert found is not None
    at, stats = found
    assert at == START + timedelta(minutes=2)
    assert stats == Recorded().scheduler_stats()
    points = scheduler.history(database, START + timedelta(seconds=30))
    assert [p.at for p in points] == [START + timedelta(minutes=n) for n in (1, 2)]
    assert points[0].backfill_cycle_mean == 129 and points[0].schedule_cycle_last == 112
    top = scheduler.top_rpc_users(stats, 2)
    everyone = sorted(stats.rpcs_by_user, key=lambda u: u.total_us, reverse=True)
    assert [u.user for u in top] == [u.user for u in everyone[:2]]


def test_pending_reasons_by_partition_come_from_the_snapshot() -> None:
    raw = (FIXTURES / "22.05" / "squeue.json").read_bytes()
    snap = ClusterSnapshot.build(
        1,
        0.1,
        parse.parse_squeue(raw),
        parse.parse_nodes((FIXTURES / "22.05" / "sinfo.json").read_bytes()),
        [],
    )
    expected: dict[str, dict[str, int]] = {}
    for job in json.loads(raw)["jobs"]:
        if job["job_state"] == "PENDING":
            reasons = expected.setdefault(job["partition"], {})
            reasons[job["state_reason"]] = reasons.get(job["state_reason"], 0) + 1
    assert expected == {"normal": {"JobHeldUser": 1, "Resources": 1}}
    rows = scheduler.pending_by_partition(snap)
    assert [(r.partition, r.pending) for r in rows] == [("normal", 2)]
    assert {c.reason: c.jobs for c in rows[0].reasons} == expected["normal"]


def test_a_long_history_is_thinned_evenly_keeping_the_newest(
    database: Database, db_settings: Settings
) -> None:
    clock = Clock(START)
    sampler = SdiagSampler(db_settings, database, Recorded(), Leadership.single(), clock=clock)
    for _ in range(11):
        asyncio.run(sampler.tick())
        clock.now += timedelta(minutes=1)
    every = [START + timedelta(minutes=n) for n in range(11)]
    assert [p.at for p in scheduler.history(database, START)] == every
    thinned = [p.at for p in scheduler.history(database, START, points=4)]
    assert thinned == [every[0], every[3], every[6], every[10]]
