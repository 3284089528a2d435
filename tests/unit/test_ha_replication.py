"""Replication pieces: the snapshot wire format, resuming a live socket from a
generation, and two in-process replicas sharing a real Redis (started by the test)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.session import Database
from hpcportal.ha.leadership import Leadership
from hpcportal.ha.redis_bus import RedisBus
from hpcportal.ha.replication import Replicator, decode_snapshot, encode_snapshot
from hpcportal.runas import RunAs
from hpcportal.services import auth
from hpcportal.services.live import LiveHub
from hpcportal.services.snapshot import SnapshotService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import PrivateData
from hpcportal.slurm.states import JobStatus
from tests.unit.conftest import TEST_SECRET
from tests.unit.test_live import (
    ALICE,
    JOBS,
    NODES,
    PARTITIONS,
    FakeRunAs,
    build,
    changed,
    connect,
    make_hub,
    messages,
)


def test_a_snapshot_crosses_the_wire_unchanged() -> None:
    snap = build(7, JOBS)
    back = decode_snapshot(encode_snapshot(snap))
    assert back.generation == 7 and back.taken_at == snap.taken_at
    assert back.jobs == snap.jobs and back.nodes == snap.nodes
    assert back.partitions == snap.partitions and back.private_data == snap.private_data
    assert set(back.jobs_by_id) == set(snap.jobs_by_id)
    assert abs(back.age() - snap.age()) < 1.0


def test_a_resuming_socket_gets_what_it_missed_or_a_resync() -> None:
    async def scenario() -> None:
        hub = make_hub()
        one = build(1, JOBS)
        two = build(2, changed(JOBS, {"6": {"state": "RUNNING", "status": JobStatus.RUNNING}}))
        three = build(3, [j for j in changed(JOBS, {"6": {"state": "COMPLETED",
                      "status": JobStatus.COMPLETED}}) if j.id != "9"])  # fmt: skip
        for prev, cur in ((None, one), (one, two), (two, three)):
            hub.on_refresh(prev, cur)
        alice = connect(hub, ALICE, "jobs")
        hub.resume(alice, 1)  # it saw generation 1 elsewhere, then lost its socket
        await asyncio.sleep(0.05)
        got = messages(alice)
        assert [m["type"] for m in got] == ["jobs"]
        assert got[0]["generation"] == 3 and got[0]["removed"] == ["9"]
        assert {j["id"]: j["status"] for j in got[0]["changed"]}["6"] == "completed"
        hub.resume(alice, 3)  # up to date: nothing to send
        hub._history.clear()
        hub.resume(alice, 2)  # forgotten, and no shared history: reload everything
        await asyncio.sleep(0.05)
        assert messages(alice) == [{"type": "resync", "generation": 3}]

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (nothing saved), stopped afterwards."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(server).exists():
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


class CountingAdapter:
    """The Slurm boundary as a stand-in: counts the reads each replica makes."""

    def __init__(self) -> None:
        self.calls = 0
        self.named: list[list[str]] = []

    def jobs(self) -> list[Any]:
        self.calls += 1
        return list(JOBS)

    def nodes(self) -> list[Any]:
        self.calls += 1
        return list(NODES)

    def partitions(self) -> list[Any]:
        self.calls += 1
        return list(PARTITIONS)

    def controller_private_data(self) -> PrivateData:
        self.calls += 1
        return PrivateData()

    def jobs_named(self, ids: list[str]) -> list[Any]:
        self.calls += 1
        self.named.append(list(ids))
        return [j for j in JOBS if j.id in ids]


def test_two_replicas_one_reads_slurm_the_other_serves_its_snapshots(
    redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        jwt_secret=SecretStr(TEST_SECRET), database_url=f"sqlite:///{tmp_path / 'p.db'}",
        redis_url=redis_url, refresh_interval=0.3, leader_lease_seconds=1.5,
    )  # fmt: skip
    upgrade(settings)

    async def scenario() -> None:
        replicas = []
        for name in ("r1", "r2"):
            database = Database(settings)
            adapter = CountingAdapter()
            snapshot = SnapshotService(cast(SlurmAdapter, adapter), settings)
            runas = cast(RunAs, FakeRunAs({}))
            revocations = auth.RevocationList(60)
            hub = LiveHub(snapshot, settings, database=database, runas=runas,
                          revocations=revocations)  # fmt: skip
            leadership = Leadership(database, replica_id=name, lease_seconds=1.5)
            bus = RedisBus.connect(redis_url, prefix="test-shared:")
            replicator = Replicator(bus, leadership, snapshot, hub)
            replicator.wire()
            replicas.append((adapter, snapshot, hub, leadership, replicator, database))
        try:
            for _, snapshot, hub, leadership, replicator, _ in replicas:
                await leadership.start()
                await hub.start()
                await replicator.start()
                await snapshot.start()
            (a1, s1, _, l1, _, _), (a2, s2, _, l2, _, _) = replicas
            assert l1.is_leader() and not l2.is_leader()
            follower_snap = await asyncio.wait_for(s2.current(), 10)
            await asyncio.sleep(1.0)
            assert a1.calls >= 4 and a2.calls == 0  # only the leader read Slurm
            assert follower_snap.jobs == tuple(JOBS)
            # One sequence of generations: the follower reaches the leader's numbers.
            target = s1.health().generation
            deadline = time.monotonic() + 5
            while s2.health().generation < target and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert s2.health().generation >= target
            # A follower's request to read a job again goes to the leader.
            s2.request_refresh("6")
            deadline = time.monotonic() + 5
            while ["6"] not in a1.named and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert a1.named == [["6"]] and a2.calls == 0
            # The leader stops: the follower takes over within the lease and reads Slurm.
            await replicas[0][4].stop()
            await s1.stop()
            await l1.stop()
            deadline = time.monotonic() + 5
            while not l2.is_leader() and time.monotonic() < deadline:
                await l2.tick()
                await asyncio.sleep(0.1)
            assert l2.is_leader() and l2.current_token() == 2
            generation = s2.health().generation
            await asyncio.sleep(1.0)
            assert a2.calls > 0 and s2.health().generation > generation
        finally:
            for _, snapshot, hub, leadership, replicator, database in replicas:
                await snapshot.stop()
                await replicator.stop()
                await hub.stop()
                await leadership.stop()
                database.dispose()

    asyncio.run(scenario())


def test_the_bus_finds_redis_through_sentinel(redis_url: str, tmp_path: Path) -> None:
    """With ``redis_sentinels``, the bus asks the Sentinels for the master's address."""
    sentinel = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
    if not Path(sentinel).exists():
        pytest.skip("redis-sentinel is not installed (scripts/setup.sh installs it)")
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    port = _free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor portal 127.0.0.1 {redis_port} 1\n"
    )
    proc = subprocess.Popen([sentinel, str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:

        async def scenario() -> None:
            bus = RedisBus.connect(None, sentinels=[f"127.0.0.1:{port}"], master="portal",
                                   prefix="sentinel-test:")  # fmt: skip
            deadline = time.monotonic() + 10
            while not await bus.ping() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await bus.put_snapshot(5, b"payload")
            assert await bus.get_snapshot() == b"payload"
            assert await bus.get_snapshot(5) == b"payload"
            assert await bus.get_snapshot(4) is None
            await bus.close()
            direct = RedisBus.connect(redis_url, prefix="sentinel-test:")
            assert await direct.get_snapshot() == b"payload"  # the very same server
            await direct.close()

        asyncio.run(scenario())
    finally:
        proc.kill()
        proc.wait()
