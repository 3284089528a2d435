"""A slow slurmctld: the snapshot refresher backs off, says so, and comes back.

slurmctld is stopped (SIGSTOP) for a few seconds, so the refresh that is under way
takes several times longer than half of its 1 s interval. The refresher must then
refresh less often (the interval grows, counted and shown in ``/metrics``, with the
reason in ``/ready``), and return to 1 s once slurmctld answers quickly again.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_slurm_down import slurmctld_pid, wait_until

STOPPED_SECONDS = 3.0


@pytest.fixture
def portal(make_portal: PortalFactory, tmp_path: Path) -> Iterator[RunningPortal]:
    with make_portal.run(
        tmp=tmp_path,
        refresh_interval=1.0,
        refresh_slow_fraction=0.5,
        refresh_max_interval=8.0,
        stale_after=10.0,
        slurm_timeout=20.0,  # the stopped slurmctld makes the refresh slow, not failed
    ) as running:
        yield running


def metric(client: httpx.Client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_slow_slurmctld_lengthens_the_interval_until_it_recovers(
    portal: RunningPortal, devcluster: dict[str, Any]
) -> None:
    snapshot = portal.services.snapshot
    portal.wait_for_generation(0)
    wait_until(lambda: snapshot.interval == 1.0)  # a slow first read may have backed off
    slow = 'hpcportal_snapshot_backoffs_total{reason="slow"}'
    with portal.client() as client:
        backoffs_before = metric(client, slow)
        pid = slurmctld_pid(devcluster)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(STOPPED_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)
        # The refresh caught by the stop ends now, slow: the interval grows.
        wait_until(lambda: snapshot.interval > 1.0, timeout=20)
        ready = client.get("/ready").json()
        gauge = metric(client, "hpcportal_snapshot_refresh_interval_seconds")
        assert metric(client, slow) >= backoffs_before + 1
        assert ready["refresh_interval_seconds"] >= 2.0
        assert ready["backoff"] and "answered slowly" in ready["backoff"]
        assert gauge >= 2.0
        # slurmctld answers quickly again: back to the configured interval, reason gone.
        wait_until(lambda: snapshot.interval == 1.0, timeout=40)
        ready_after = client.get("/ready")
        assert ready_after.status_code == 200, ready_after.text
        assert ready_after.json()["backoff"] is None
        assert ready_after.json()["refresh_interval_seconds"] == 1.0
        assert metric(client, "hpcportal_snapshot_refresh_interval_seconds") == 1.0
