"""Idle-GPU nudges end to end: a real Prometheus (``tests/real_prometheus``, the DCGM
stand-in for gpu001's two GPUs), a real portal and its database, alice's two real GPU
jobs on gpu001: one whose GPU the stand-in reports idle (2 %), one busy (80 %).

Two replicas' checkers (real ``Leadership`` leases on the portal's database, each with
its own Prometheus client, reading the portal's snapshot) run several rounds: only the
leader asks Prometheus, the idle job's owner is told exactly once (one stored
notification, one delivery), the busy job never; a new leader and a restarted checker
tell nobody again; admins list the job at /api/v1/monitoring/idle-gpus, alice may not.
Short settings: idle for 6 s below 10 %.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from hpcportal.db.models import GpuIdleNudge, Notification
from hpcportal.ha import Leadership
from hpcportal.services.monitoring.idle_gpu import IdleGpuChecker
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.notifications import Delivery
from hpcportal.services.snapshot import ClusterSnapshot
from tests import real_prometheus
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.real_prometheus import GpuStandIn, RealPrometheus

pytestmark = pytest.mark.skipif(
    not real_prometheus.available(), reason="prometheus and prometheus-node-exporter missing"
)

NODES = ["gpu001"]


@pytest.fixture(scope="module")
def gpu() -> GpuStandIn:
    return GpuStandIn(hostname="gpu001", gpus=2)


@pytest.fixture(scope="module")
def prom(gpu: GpuStandIn) -> Iterator[RealPrometheus]:
    with real_prometheus.real_prometheus(NODES, gpu) as running:
        yield running


@pytest.fixture(scope="module")
def portal(prom: RealPrometheus, make_portal: PortalFactory) -> RunningPortal:
    # The portal's own checker stays off (0): the test drives the replicas' rounds.
    return make_portal(prometheus_url=prom.url, prometheus_timeout=5.0,
                       prometheus_min_step=1.0, prometheus_cache_seconds=0.0,
                       gpu_idle_check_seconds=0, gpu_idle_minutes=0.1,
                       gpu_idle_threshold_percent=10.0)  # fmt: skip


@pytest.fixture(scope="module")
def jobs(
    conf: str, gpu: GpuStandIn, prom: RealPrometheus, portal: RunningPortal
) -> Iterator[tuple[int, int]]:
    """alice's idle GPU job (its GPU at 2 %) and busy one (80 %), both running."""
    idle = slurm_cli.sbatch(conf, "alice", "-p", "gpu", "--gres=gpu:1", "-J", "idle-gpu-test",
                            "--wrap", "sleep 600")  # fmt: skip
    busy = slurm_cli.sbatch(conf, "alice", "-p", "gpu", "--gres=gpu:1", "-J", "busy-gpu-test",
                            "--wrap", "sleep 600")  # fmt: skip
    try:
        slurm_cli.wait_running(conf, idle, timeout=90)
        slurm_cli.wait_running(conf, busy, timeout=90)
        gpu.jobs[0], gpu.util[0] = str(idle), 2.0
        gpu.jobs[1], gpu.util[1] = str(busy), 80.0
        for job in (idle, busy):
            prom.wait_for(f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job}"}}')
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        time.sleep(9)  # more than the 6 s idle window of figures
        yield idle, busy
    finally:
        slurm_cli.scancel(conf, idle)
        slurm_cli.scancel(conf, busy)
        gpu.jobs.clear()
        gpu.util.clear()


class PortalSnapshot:
    """The portal's latest snapshot, as this replica's checker reads it."""

    def __init__(self, portal: RunningPortal) -> None:
        self.portal = portal

    async def current(self) -> ClusterSnapshot:
        snap = self.portal.services.snapshot.latest()
        assert snap is not None
        return snap


def nudges(portal: RunningPortal) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    with portal.services.database.session() as session:
        told = list(session.scalars(select(GpuIdleNudge.job_id)))
        notes = [(n.username, n.job_id, n.body) for n in session.scalars(
            select(Notification).where(Notification.event == "gpu_idle"))]  # fmt: skip
    return told, notes


def test_an_idle_gpu_job_is_told_once_by_the_leader_and_a_busy_one_never(
    portal: RunningPortal, prom: RealPrometheus, jobs: tuple[int, int],
    alice: dict[str, str], carol: dict[str, str],
) -> None:  # fmt: skip
    idle, busy = jobs
    # The replicas' checkers check (every second, driven here by tick()).
    settings = portal.settings.model_copy(update={"gpu_idle_check_seconds": 1.0})
    database = portal.services.database
    delivered: list[Delivery] = []
    asked: dict[str, int] = {}

    def checker(name: str, leader: Leadership) -> tuple[IdleGpuChecker, MonitoringService]:
        monitoring = MonitoringService.from_settings(settings)
        assert monitoring.client is not None
        original = monitoring.client.query

        async def counted(promql: str, at: float | None = None) -> Any:
            asked[name] = asked.get(name, 0) + 1
            return await original(promql, at)

        monitoring.client.query = counted  # type: ignore[method-assign,assignment]
        return IdleGpuChecker(settings, database, PortalSnapshot(portal), monitoring, leader,
                              deliver=delivered.extend), monitoring  # fmt: skip

    async def scenario() -> None:
        first = Leadership(database, replica_id="idle-r1", lease_seconds=30)
        second = Leadership(database, replica_id="idle-r2", lease_seconds=30)
        one, one_m = checker("one", first)
        two, two_m = checker("two", second)
        try:
            await first.start()
            await second.start()
            assert first.is_leader() and not second.is_leader()
            told = []
            for _ in range(3):  # several rounds on both replicas
                assert await two.tick() == []
                told += await one.tick()
                await asyncio.sleep(1)
            assert [d.notification.job_id for d in told] == [str(idle)]
            assert "two" not in asked and asked["one"] >= 2  # the follower never asks
            # The leader leaves; the other takes over and tells nobody again.
            await first.stop()
            await second.tick()
            assert second.is_leader()
            for _ in range(2):
                assert await two.tick() == []
                await asyncio.sleep(1)
            # A restarted checker on the new leader: nobody told again.
            three, three_m = checker("three", second)
            assert await three.tick() == []
            assert one.last_error is None and two.last_error is None
            await three_m.aclose()
        finally:
            await first.stop()
            await second.stop()
            await one_m.aclose()
            await two_m.aclose()

    asyncio.run(scenario())
    assert [(d.username, d.notification.job_id, d.notification.event, d.unread > 0)
            for d in delivered] == [("alice", str(idle), "gpu_idle", True)]  # fmt: skip
    told, notes = nudges(portal)
    assert told == [str(idle)]
    assert len(notes) == 1 and notes[0][:2] == ("alice", str(idle))
    assert "below 10 % for 0.1 minutes (at most 2.0 %)" in notes[0][2]
    with portal.client() as c:
        r = c.get("/api/v1/monitoring/idle-gpus", headers=carol)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [(i["job_id"], i["user"], i["peak_percent"], i["gpus"]) for i in items] == [
            (str(idle), "alice", 2.0, 1)]  # fmt: skip
        assert items[0]["link"] == f"/jobs/{idle}#graphs-title"
        assert c.get("/api/v1/monitoring/idle-gpus", headers=alice).status_code == 403
        mine = c.get("/api/v1/notifications", headers=alice).json()
        gpu_idle = [n for n in mine["items"] if n["event"] == "gpu_idle"]
        assert [n["job_id"] for n in gpu_idle] == [str(idle)]
        assert gpu_idle[0]["params"]["peak_percent"] == 2.0
    assert str(busy) not in told
