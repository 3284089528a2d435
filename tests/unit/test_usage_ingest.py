"""The usage store's ingester: windows, rollups, and nothing counted twice.

On SQLite, PostgreSQL and MariaDB. Finished jobs come from ``History``, a stand-in for
sacct (named as such: the real read is ``SlurmAdapter.ended_jobs``, exercised against
the dev cluster in ``tests/integration/test_usage_store.py``) that answers like sacct
does: every job *active* in the window asked, running ones included, so the ingester's
own end-time filtering and cursor are what is tested.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.report_tables import UsageDaily, UsageHourly, UsageIngestCursor, UsageJob
from hpcportal.db.session import Database
from hpcportal.services.reports import ingest
from hpcportal.services.reports.ingest import UsageIngester
from hpcportal.slurm.adapter import ENDED_STATES
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.formats import SlurmRelease
from hpcportal.slurm.models import AccountingRecord
from hpcportal.slurm.states import JobStatus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Leader:
    """Always leading (the leader-only behaviour is the test of ``Leadership``)."""

    def __init__(self, leading: bool = True) -> None:
        self.leading = leading

    def is_leader(self) -> bool:
        return self.leading

    def fence(self, session: Any) -> None:
        return None


class History:
    """Stand-in for sacct: the jobs of a cluster, selected as ``sacct -S -E`` selects
    (active at some time in the window), counting its reads."""

    def __init__(self, jobs: list[AccountingRecord]) -> None:
        self.jobs = jobs
        self.reads: list[tuple[datetime, datetime]] = []

    def cluster(self) -> SlurmCluster:
        return SlurmCluster(
            name="dev", release=SlurmRelease.parse("slurm 22.05.11"), data_format="v0.0.38"
        )

    def ended_jobs(self, start: datetime, end: datetime) -> list[AccountingRecord]:
        self.reads.append((start, end))
        active = [
            j
            for j in self.jobs
            if (j.submit_time or NOW) < end and (j.end_time is None or j.end_time >= start)
        ]
        # What SlurmAdapter.ended_jobs keeps of sacct's answer.
        return [
            j
            for j in active
            if j.end_time is not None and start <= j.end_time < end and j.state in ENDED_STATES
        ]


def job(
    job_id: int,
    user: str,
    account: str,
    *,
    end: datetime | None,
    state: str = "COMPLETED",
    cpus: int = 2,
    gpus: int = 0,
    mem: int = 1024,
    elapsed: int = 600,
    wait: int = 30,
    limit: int = 60,
    partition: str = "debug",
) -> AccountingRecord:
    ran = elapsed > 0 or state not in ("CANCELLED",)
    start = (end - timedelta(seconds=elapsed)) if end is not None else NOW - timedelta(hours=1)
    tres = {"cpu": cpus, "mem": mem, "node": 1} | ({"gres/gpu": gpus} if gpus else {})
    return AccountingRecord(
        id=str(job_id),
        job_id=job_id,
        name="j",
        user=user,
        account=account,
        partition=partition,
        qos="normal",
        state=state if end is not None else "RUNNING",
        status=JobStatus.RUNNING if end is None else JobStatus.COMPLETED,
        exit_code=0,
        nodes="c1" if ran else None,
        node_names=["c1"] if ran else [],
        node_count=1 if ran else 0,
        cpus_requested=cpus,
        tres_allocated=tres if ran else {},
        time_limit_minutes=limit,
        submit_time=start - timedelta(seconds=wait),
        eligible_time=start - timedelta(seconds=wait),
        start_time=start if ran else None,
        end_time=end,
        elapsed_seconds=elapsed,
        cpu_time_seconds=elapsed * cpus / 2,
    )


def sample() -> list[AccountingRecord]:
    h = NOW - timedelta(hours=3)
    return [
        job(1, "alice", "physics", end=h + timedelta(minutes=10), cpus=4, elapsed=3600),
        job(2, "alice", "physics", end=h + timedelta(minutes=20), state="FAILED", elapsed=60),
        job(3, "bob", "physics", end=h + timedelta(minutes=70), gpus=1, partition="gpu"),
        job(4, "bob", "chem", end=h + timedelta(minutes=80), state="CANCELLED", elapsed=0),
        job(
            5,
            "dave",
            "chem",
            end=h + timedelta(minutes=90),
            state="TIMEOUT",
            elapsed=3600,
            limit=60,
        ),
        job(6, "dave", "chem", end=None),  # still running: not ingested
    ]


def settings_for(db_settings: Settings, **changes: Any) -> Settings:
    base = {
        "reports_ingest_window_minutes": 60,
        "reports_ingest_lookback_days": 1,
        "reports_ingest_settle_seconds": 120,
    }
    return db_settings.model_copy(update=base | changes)


def totals(database: Database, model: Any) -> dict[str, Any]:
    with database.session() as session:
        row = session.execute(
            select(
                func.sum(model.jobs),
                func.sum(model.cpu_seconds),
                func.sum(model.gpu_seconds),
                func.sum(model.memory_mb_seconds),
                func.sum(model.completed),
                func.sum(model.failed),
                func.sum(model.timed_out),
                func.sum(model.cancelled),
                func.sum(model.started),
                func.sum(model.wait_seconds),
            )
        ).one()
    keys = (
        "jobs",
        "cpu",
        "gpu",
        "mem",
        "completed",
        "failed",
        "timed_out",
        "cancelled",
        "started",
        "wait",
    )
    return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}


EXPECTED = {
    "jobs": 5,
    "cpu": 4 * 3600 + 2 * 60 + 2 * 600 + 0 + 2 * 3600,
    "gpu": 600,
    "mem": 1024 * (3600 + 60 + 600 + 3600),
    "completed": 2,
    "failed": 1,
    "timed_out": 1,
    "cancelled": 1,
    "started": 4,
    "wait": 4 * 30,
}


def jobs_stored(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(UsageJob)) or 0)


def test_ingest_fills_jobs_and_both_rollups(database: Database, db_settings: Settings) -> None:
    source = History(sample())
    ingester = UsageIngester(
        settings_for(db_settings), database, source, Leader(), clock=Clock(NOW)
    )
    windows = ingester.run()
    # A day of lookback in one-hour windows, up to settle (two minutes) ago.
    assert len(windows) == 24
    assert windows[-1].end == NOW - timedelta(seconds=120)
    assert sum(w.added for w in windows) == 5  # the running job waits for its end
    assert jobs_stored(database) == 5
    assert totals(database, UsageHourly) == EXPECTED
    assert totals(database, UsageDaily) == EXPECTED
    with database.session() as session:
        hours = session.execute(
            select(UsageHourly.period_start, func.sum(UsageHourly.jobs)).group_by(
                UsageHourly.period_start
            )
        ).all()
        cursor = session.get(UsageIngestCursor, "dev")
        assert cursor is not None
        assert cursor.ingested_until == NOW - timedelta(seconds=120)
        assert cursor.slurm_release == "22.05.11"
        gpu_row = session.scalars(select(UsageHourly).where(UsageHourly.partition == "gpu")).one()
        assert (gpu_row.user, gpu_row.gpu_seconds, gpu_row.size_bucket) == ("bob", 600, "2-4")
    assert sorted((h.astimezone(UTC), n) for h, n in hours) == [
        (NOW - timedelta(hours=3), 2),
        (NOW - timedelta(hours=2), 3),
    ]


def test_ingesting_again_counts_nothing_twice(database: Database, db_settings: Settings) -> None:
    source = History(sample())
    clock = Clock(NOW)
    ingester = UsageIngester(settings_for(db_settings), database, source, Leader(), clock=clock)
    ingester.run()
    assert ingester.run() == []  # up to date: no read at all
    reads = len(source.reads)
    # The same windows read again (a second ingester, an operator rewinding the cursor).
    again = ingester.ingest_window(NOW - timedelta(hours=4), NOW, overlap=timedelta(0))
    assert len(source.reads) == reads + 1
    assert (again.read, again.added) == (5, 0)
    assert totals(database, UsageHourly) == EXPECTED
    assert totals(database, UsageDaily) == EXPECTED
    assert jobs_stored(database) == 5


def test_a_job_that_ends_later_is_read_by_the_window_it_ends_in(
    database: Database, db_settings: Settings
) -> None:
    jobs = sample()
    source = History(jobs)
    clock = Clock(NOW)
    ingester = UsageIngester(settings_for(db_settings), database, source, Leader(), clock=clock)
    ingester.run()
    # The running job ends; slurmdbd hears of it a minute late, within settle.
    jobs[5] = job(6, "dave", "chem", end=NOW + timedelta(minutes=5), elapsed=3600)
    clock.now = NOW + timedelta(minutes=10)
    ingester.run()
    assert jobs_stored(database) == 6
    assert totals(database, UsageDaily)["cpu"] == EXPECTED["cpu"] + 2 * 3600
    # A job whose end slurmdbd recorded after the cursor passed it, within settle.
    late = job(7, "alice", "physics", end=clock.now - timedelta(seconds=150), elapsed=100)
    jobs.append(late)
    clock.now += timedelta(minutes=1)
    ingester.run()
    assert jobs_stored(database) == 7
    assert totals(database, UsageDaily)["jobs"] == 7


def test_a_crash_in_the_middle_of_a_window_stores_none_of_it(
    database: Database, db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = History(sample())
    settings = settings_for(db_settings, reports_ingest_window_minutes=24 * 60)
    ingester = UsageIngester(settings, database, source, Leader(), clock=Clock(NOW))
    real_upsert = ingest.rollup_upsert
    calls = 0

    def crash_after_the_hourly_rollup(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # jobs inserted, hourly rollup added, daily not yet
            raise RuntimeError("the replica died here")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(ingest, "rollup_upsert", crash_after_the_hourly_rollup)
    with pytest.raises(RuntimeError, match="died"):
        ingester.run()
    assert calls == 2
    assert jobs_stored(database) == 0
    assert totals(database, UsageHourly)["jobs"] == 0
    assert ingester.cursor("dev") is None

    monkeypatch.setattr(ingest, "rollup_upsert", real_upsert)
    ingester.run()
    ingester.ingest_window(NOW - timedelta(days=1), NOW, overlap=timedelta(0))
    assert totals(database, UsageHourly) == EXPECTED
    assert totals(database, UsageDaily) == EXPECTED


def test_a_follower_reads_nothing(database: Database, db_settings: Settings) -> None:
    source = History(sample())
    ingester = UsageIngester(
        settings_for(db_settings), database, source, Leader(False), clock=Clock(NOW)
    )
    assert asyncio.run(ingester.tick()) is None
    assert source.reads == []
    assert jobs_stored(database) == 0


def test_size_buckets_and_states() -> None:
    from hpcportal.services.reports.buckets import size_bucket

    assert [size_bucket(n) for n in (0, 1, 2, 4, 5, 64, 65, 1024, 1025)] == [
        "1", "1", "2-4", "2-4", "5-16", "17-64", "65-256", "257-1024", "1025+"
    ]  # fmt: skip
    assert ingest.state_column("OUT_OF_MEMORY") == "failed"
    assert ingest.state_column("PREEMPTED") == "other"
    assert ingest.gpus_of({"gres/gpu:a100": 2, "gres/gpu:v100": 1}) == 3
    assert ingest.gpus_of({"gres/gpu": 2, "gres/gpu:a100": 2}) == 2


def test_two_replicas_only_the_leader_ingests_and_a_deposed_one_writes_nothing(
    database: Database, db_settings: Settings
) -> None:
    """Real ``Leadership`` of two replicas on one database: the follower never asks
    sacct; the leader, once deposed, has its window refused by the fence (no rows)."""
    from hpcportal.ha import Leadership, LeadershipLost

    settings = settings_for(db_settings)
    one_source, two_source = History(sample()), History(sample())
    clock = Clock(NOW - timedelta(hours=6))

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = UsageIngester(settings, database, one_source, first, clock=clock)
        two = UsageIngester(settings, database, two_source, second, clock=clock)
        try:
            await first.start()
            await second.start()
            assert first.is_leader() and not second.is_leader()
            assert await two.tick() is None and two_source.reads == []
            assert await one.tick()  # the first 18 hours of the lookback
            await first.stop()  # the leader leaves
            with pytest.raises(LeadershipLost):
                one.ingest_window(NOW - timedelta(hours=6), NOW, overlap=timedelta(0))
            assert jobs_stored(database) == 0  # nothing had ended before NOW - 6 h
            await second.tick()
            assert second.is_leader()
            clock.now = NOW
            assert await two.tick()  # from the cursor the first leader left
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert jobs_stored(database) == 5
    assert totals(database, UsageDaily) == EXPECTED
    # It went on from the cursor (NOW - 6 h - settle), re-reading only the settle overlap.
    assert min(start for start, _ in two_source.reads) == NOW - timedelta(hours=6, minutes=4)


def test_the_store_status_says_up_to_when_reports_are_complete(
    database: Database, db_settings: Settings
) -> None:
    """What ``GET /reports/store`` and the reports page show: the cursor, how far it is
    behind now, the last window; and the leader's gauge for the shipped alert rule."""
    settings = settings_for(db_settings)
    assert ingest.store_status(database, settings, NOW).items == []
    UsageIngester(settings, database, History(sample()), Leader(), clock=Clock(NOW)).run()
    later = NOW + timedelta(minutes=10)
    status = ingest.store_status(database, settings, later)
    [dev] = status.items
    assert dev.complete_until == NOW - timedelta(seconds=120)
    assert dev.behind_seconds == 600 + 120
    # The last of the hour-long windows ends at the settle time: 58 minutes long.
    assert (dev.last_window_seconds, dev.last_window_jobs) == (3600 - 120, 0)
    assert (dev.cluster, dev.slurm_release) == ("dev", "22.05.11")
    assert status.settle_seconds == 120
    assert status.ingest_every_seconds == settings.reports_ingest_seconds
    gauge = REGISTRY.get_sample_value(
        "hpcportal_usage_store_complete_until_seconds", {"cluster": "dev"}
    )
    assert gauge == (NOW - timedelta(seconds=120)).timestamp()
