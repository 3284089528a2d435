"""``SlurmActions`` on the live dev cluster (any release): each action as its user.

The unit tests read every release's recorded output; this runs the same operations
against a real slurmctld, so a decoder that only fits the recordings would fail here.
Two short jobs of alice's, both gone when the test ends.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hpcportal.errors import SlurmError, SlurmNotFound, SlurmPermissionDenied
from hpcportal.runas import RunAs
from hpcportal.services.job_control import already_ended
from hpcportal.slurm.actions import BatchJob, ControlOutcome, SlurmActions, TimeLimitUpdated
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor

HELD = BatchJob(
    ("-H", "-J", "actions-live", "-t", "10", "--chdir=/tmp", "-o", "/dev/null"),
    "#!/bin/sh\nsleep 60\n",
    {},
)
QUICK = BatchJob(
    ("-J", "actions-live-done", "--chdir=/tmp", "-o", "/dev/null"), "#!/bin/sh\ntrue\n", {}
)


@pytest.fixture
def adapter(devcluster: dict[str, Any]) -> SlurmAdapter:
    conf = Path(devcluster["slurm_conf"])
    bin_dir = Path(devcluster["bin_dir"]) if devcluster.get("bin_dir") else None
    runas = RunAs(method="runuser", slurm_conf=conf, slurm_bin_dir=bin_dir)
    return SlurmAdapter(SlurmExecutor(slurm_conf=conf, bin_dir=bin_dir, runas=runas, timeout=60))


def test_a_held_jobs_life_through_the_typed_actions(adapter: SlurmAdapter) -> None:
    actions: SlurmActions = adapter.actions
    verdict = actions.test_only(HELD, as_user="alice")
    assert verdict.nodes and verdict.message.startswith("Job ")
    job = actions.submit(HELD, as_user="alice")
    job_id = str(job.job_id)
    try:
        assert job.cluster == actions.cluster.name
        # Held, so pending: its owner may raise the limit (MaxTime is INFINITE here).
        assert actions.add_time(job_id, 60, as_user="alice") == TimeLimitUpdated(job_id, 60)
        listed = adapter.job(job_id)
        assert listed is not None and listed.time_limit_minutes == 70
        with pytest.raises(SlurmPermissionDenied):
            actions.hold(job_id, as_user="bob")
        # Released, it may start at once (26.05 starts it within the call); hold and
        # requeue succeed either way.
        assert actions.release(job_id, as_user="alice") == ControlOutcome(job_id, "release")
        assert actions.hold(job_id, as_user="alice") == ControlOutcome(job_id, "hold")
        assert actions.cancel(job_id, as_user="alice") == ControlOutcome(job_id, "cancel")
    finally:
        try:
            actions.cancel(job_id, as_user="alice")
        except SlurmError as exc:
            assert already_ended(exc), exc.message
    with pytest.raises(SlurmNotFound):
        actions.cancel("99999999", as_user="alice")


def test_a_finished_jobs_efficiency_record(adapter: SlurmAdapter) -> None:
    actions = adapter.actions
    job_id = str(actions.submit(QUICK, as_user="alice").job_id)
    deadline = time.monotonic() + 60
    record = actions.efficiency_record(job_id)
    while (record is None or record.state != "COMPLETED") and time.monotonic() < deadline:
        time.sleep(1)
        record = actions.efficiency_record(job_id)
    assert record is not None and record.state == "COMPLETED", record
    assert (record.job_id, record.user, record.cpus) == (job_id, "alice", 1)
    assert record.elapsed_seconds >= 0 and record.cpu_time_seconds >= 0
    assert actions.efficiency_record("99999999") is None
