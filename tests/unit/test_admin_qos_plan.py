"""QoS plans without Slurm: what a change does to the values (``QosChange``), and
which pending jobs a limit change would release or hold back (``limit_effects``).

Reading and applying run sacctmgr: that is tested on the live dev cluster
(tests/integration/test_admin_qos.py) and against recordings
(tests/unit/test_slurm_admin_qos.py)."""

from __future__ import annotations

import pytest

from hpcportal.services.admin.qos import QosChange, QosRequest, limit_effects
from hpcportal.slurm.admin_qos import QosLimits
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

BEFORE = QosLimits(
    priority=10,
    flags=("DenyOnLimit",),
    max_wall_minutes=60,
    max_jobs_per_user=2,
    max_tres_per_user={"cpu": 4},
)


def job(job_id: int, user: str, state: str, reason: str | None = None, limit: int = 30) -> Job:
    status = JobStatus.QUEUED if state == "PENDING" else JobStatus.RUNNING
    return Job(
        id=str(job_id),
        job_id=job_id,
        name="j",
        user=user,
        partition="normal",
        qos="q",
        state=state,
        status=status,
        reason=reason,
        time_limit_minutes=limit,
    )


def test_a_change_sets_only_what_it_names_and_null_removes_a_limit() -> None:
    change = QosChange.model_validate({"max_wall_minutes": None, "flags": [], "priority": 5})
    after = change.applied_to(BEFORE)
    assert after.max_wall_minutes is None and after.flags == () and after.priority == 5
    assert after.max_jobs_per_user == 2 and after.max_tres_per_user == {"cpu": 4}
    with pytest.raises(ValueError):
        QosChange.model_validate({"max_tres_per_user": "cpu=x"}).applied_to(BEFORE)
    with pytest.raises(ValueError):
        QosRequest.model_validate({"action": "rename", "name": "q"})


def test_raising_a_limit_releases_the_jobs_waiting_on_it() -> None:
    jobs = [
        job(1, "alice", "PENDING", "QOSMaxJobsPerUserLimit"),
        job(2, "bob", "PENDING", "QOSMaxCpuPerUserLimit"),
        job(3, "dave", "PENDING", "Priority"),
        job(4, "alice", "RUNNING"),
        job(5, "alice", "RUNNING"),
    ]
    after = QosChange(max_jobs_per_user=3).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert [j.id for j in released] == ["1"] and blocked == []
    after = QosChange.model_validate({"max_tres_per_user": {}}).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert [j.id for j in released] == ["2"] and blocked == []


def test_lowering_a_limit_holds_back_the_jobs_above_it() -> None:
    jobs = [
        job(1, "alice", "PENDING", "Priority", limit=120),
        job(2, "bob", "PENDING", "Priority", limit=20),
        job(3, "bob", "RUNNING"),
    ]
    after = QosChange(max_wall_minutes=30).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert released == [] and [j.id for j in blocked] == ["1"]
    after = QosChange(max_jobs_per_user=1).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert [j.id for j in blocked] == ["2"]
