"""The system report's node downtime read (``SlurmAdapter.node_events``) against the
live dev cluster of each release: carol (the dev cluster's Slurm administrator)
drains a node through ``scontrol``, and slurmdbd's event for it is read back with her
as its user, open while the node is drained and closed after the resume. The node is
resumed in teardown whatever happens (other tests share the cluster)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.models import NodeEvent

pytestmark = pytest.mark.slurm_facing

NODE = "node004"
REASON = f"report node events test | {os.getpid()}"


def scontrol_as_carol(devcluster: dict[str, Any], *args: str) -> None:
    binary = (
        str(Path(devcluster["bin_dir"]) / "scontrol") if devcluster.get("bin_dir") else "scontrol"
    )
    env = {"PATH": os.environ["PATH"], "SLURM_CONF": devcluster["slurm_conf"], "LANG": "C.UTF-8"}
    done = subprocess.run(["runuser", "-u", "carol", "--", binary, *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def adapter(devcluster: dict[str, Any]) -> SlurmAdapter:
    bin_dir = Path(devcluster["bin_dir"]) if devcluster.get("bin_dir") else None
    executor = SlurmExecutor(slurm_conf=Path(devcluster["slurm_conf"]), bin_dir=bin_dir, timeout=60)
    return SlurmAdapter(executor, cache_seconds=0)


@pytest.fixture
def drained(devcluster: dict[str, Any]) -> Iterator[datetime]:
    started = datetime.now(UTC).replace(microsecond=0)
    scontrol_as_carol(devcluster, "update", f"NodeName={NODE}", "State=DRAIN", f"Reason={REASON}")
    try:
        yield started
    finally:
        subprocess.run(
            ["scontrol", "update", f"NodeName={NODE}", "State=RESUME"],
            env={**os.environ, "SLURM_CONF": devcluster["slurm_conf"]},
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip


def ours(adapter: SlurmAdapter, since: datetime) -> list[NodeEvent]:
    window_end = datetime.now(UTC) + timedelta(minutes=1)
    events = adapter.node_events(since - timedelta(minutes=1), window_end)
    return [e for e in events if e.node == NODE and e.reason == REASON]


def wait_for(adapter: SlurmAdapter, since: datetime, closed: bool) -> NodeEvent:
    """slurmctld sends the event to slurmdbd asynchronously: wait for it (30 s)."""
    deadline = time.monotonic() + 30
    found: list[NodeEvent] = []
    while time.monotonic() < deadline:
        found = ours(adapter, since)
        if found and (found[-1].end is not None) == closed:
            return found[-1]
        time.sleep(0.5)
    pytest.fail(f"no {'closed' if closed else 'open'} event of {NODE}: {found}")


def test_a_drain_by_carol_is_an_event_open_until_resumed(
    adapter: SlurmAdapter, drained: datetime, devcluster: dict[str, Any]
) -> None:
    event = wait_for(adapter, drained, closed=False)
    assert (event.drained, event.user, event.end) == (True, "carol", None)
    assert "DRAIN" in event.state
    assert abs((event.start - drained).total_seconds()) < 60
    time.sleep(1.2)
    scontrol_as_carol(devcluster, "update", f"NodeName={NODE}", "State=RESUME")
    closed = wait_for(adapter, drained, closed=True)
    assert closed.start == event.start
    assert closed.end is not None and closed.end >= closed.start
    # A window that ends before the drain does not hold it.
    earlier = adapter.node_events(drained - timedelta(hours=2), drained - timedelta(hours=1))
    assert not [e for e in earlier if e.reason == REASON]
