"""Idle-GPU nudges are stored once per job, fenced, on every database (SQLite,
PostgreSQL, MariaDB), and which jobs are candidates; the PromQL asked of Prometheus.

The end-to-end check with a real Prometheus and real jobs is
``tests/integration/test_idle_gpu.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.models import GpuIdleNudge, Notification
from hpcportal.db.session import Database
from hpcportal.ha import Leadership, LeadershipLost
from hpcportal.services.monitoring import idle_gpu
from hpcportal.services.monitoring.idle_gpu import IdleGpuChecker, idle_query
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def job(job_id: int, *, gpus: int = 1, minutes: float = 60.0, status: JobStatus =
        JobStatus.RUNNING) -> Job:  # fmt: skip
    return Job(id=str(job_id), job_id=job_id, name=f"train-{job_id}", user="alice",
               partition="gpu", state=status.value.upper(), status=status, gpus=gpus,
               nodes="gpu001", node_names=["gpu001"],
               start_time=NOW - timedelta(minutes=minutes))  # fmt: skip


class NoSnapshot:
    async def current(self) -> ClusterSnapshot:
        raise AssertionError("not asked in these tests")


def checker(settings: Settings, database: Database, leader: Leadership) -> IdleGpuChecker:
    return IdleGpuChecker(settings, database, NoSnapshot(), MonitoringService(settings, None),
                          leader, clock=lambda: NOW)  # fmt: skip


def test_a_job_is_told_once_and_a_lost_leader_writes_nothing(
    database: Database, db_settings: Settings
) -> None:
    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one, two = checker(db_settings, database, first), checker(db_settings, database, second)
        try:
            await first.start()
            await second.start()
            told = one.store([(job(11), 1.5), (job(12), 0.0)], NOW)
            assert [(d.username, d.notification.job_id, d.unread) for d in told] == [
                ("alice", "11", 1), ("alice", "12", 2)]  # fmt: skip
            assert "at most 1.5 %" in told[0].notification.body
            assert told[0].notification.params["link"] == "/jobs/11#graphs-title"
            assert one.store([(job(11), 1.0)], NOW) == []  # never twice
            with pytest.raises(LeadershipLost):
                two.store([(job(13), 1.0)], NOW)  # not the leader
            await first.stop()
            with pytest.raises(LeadershipLost):
                one.store([(job(13), 1.0)], NOW)  # a lost leader's late write
            await second.tick()
            assert [d.notification.job_id for d in two.store([(job(11), 1.0), (job(13), 2.0)],
                                                              NOW)] == ["13"]  # fmt: skip
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    with database.session() as session:
        assert sorted(session.scalars(select(GpuIdleNudge.job_id))) == ["11", "12", "13"]
        events = session.scalars(select(Notification.job_id).where(
            Notification.event == "gpu_idle")).all()  # fmt: skip
        assert sorted(str(e) for e in events) == ["11", "12", "13"]
    listed = idle_gpu.listing(database).items
    assert {i.job_id: i.peak_percent for i in listed} == {"11": 1.5, "12": 0.0, "13": 2.0}


def test_candidates_are_running_gpu_jobs_older_than_the_window_not_told(
    database: Database, db_settings: Settings
) -> None:
    settings = db_settings.model_copy(update={"gpu_idle_minutes": 30.0})
    c = checker(settings, database, Leadership.single())
    jobs = [job(1), job(2, gpus=0), job(3, minutes=10), job(4, status=JobStatus.QUEUED),
            job(5)]  # fmt: skip
    assert [j.job_id for j in c.candidates(jobs, {"5"}, NOW)] == [1]


def test_the_idle_query_asks_for_the_peak_over_a_covered_window() -> None:
    q = idle_query("max by (instance, gpu) (DCGM_FI_DEV_GPU_UTIL{$job})", "hpc_job", 42,
                   30.0, 15.0)  # fmt: skip
    inner = 'max by (instance, gpu) (DCGM_FI_DEV_GPU_UTIL{hpc_job="42"})'
    assert q == (f"max(max_over_time(({inner})[1800s:15s])) and on() "
                 f"(min(count_over_time(({inner})[1800s:15s])) >= 108)")  # fmt: skip


def test_off_without_prometheus(database: Database, db_settings: Settings) -> None:
    assert not checker(db_settings, database, Leadership.single()).enabled  # no client
    assert asyncio.run(checker(db_settings, database, Leadership.single()).tick()) == []
