"""A stopped or hung slurmctld: reads answer from the last snapshot, marked stale."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.devcluster import DevCluster
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory


def slurmctld_pid(devcluster: dict[str, Any]) -> int:
    (component,) = [c for c in devcluster["components"] if c["name"] == "slurmctld"]
    pid = DevCluster(Path(devcluster["dir"])).status()
    (fresh,) = [c for c in pid["components"] if c["name"] == "slurmctld"]
    assert fresh["running"], "slurmctld must be up before this test"
    return int(fresh["pid"] or component["pid"])


@pytest.fixture
def portal(make_portal: PortalFactory, tmp_path: Path) -> Iterator[RunningPortal]:
    with make_portal.run(
        tmp=tmp_path, refresh_interval=0.5, stale_after=30.0, slurm_timeout=2.0
    ) as running:
        yield running


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_hung_slurmctld_serves_stale_snapshot(
    portal: RunningPortal, devcluster: dict[str, Any]
) -> None:
    headers = portal.login("alice", "alice-demo")
    portal.wait_for_generation(0)
    pid = slurmctld_pid(devcluster)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: portal.services.snapshot.health().last_error is not None)
        with portal.client() as c:
            jobs = c.get("/api/v1/jobs", headers=headers)
            ready = c.get("/ready")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert jobs.status_code == 200
    meta = jobs.json()["snapshot"]
    assert meta["stale"] is True and meta["age_seconds"] >= 0
    assert "did not answer within 2 s" in meta["error"]
    assert ready.status_code == 503
    assert any("slurm" in p for p in ready.json()["problems"])
    # Once slurmctld answers again, the snapshot is fresh again.
    wait_until(lambda: not portal.services.snapshot.health().stale)


def test_stopped_slurmctld_gives_503_with_reason_then_recovers(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    cluster = DevCluster(Path(devcluster["dir"]))
    pid = slurmctld_pid(devcluster)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _alive(pid))
    try:
        settings = make_portal.settings(tmp_path, slurm_timeout=5.0)
        with make_portal.run(settings) as portal:
            headers = portal.login("alice", "alice-demo")
            with portal.client() as c:
                r = c.get("/api/v1/jobs", headers=headers)
                ready = c.get("/ready")
        assert r.status_code == 503
        assert (
            "Slurm is not reachable" in r.json()["detail"] or "did not answer" in r.json()["detail"]
        )
        assert "Traceback" not in r.text
        assert ready.status_code == 503 and ready.json()["ready"] is False
    finally:
        cluster.up()
    assert cluster.is_up()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
