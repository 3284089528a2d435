"""``services.job_control`` and ``services.efficiency`` over recorded Slurm answers.

The rules the services keep (job id and signal validation, what the person is told,
who may see a job's efficiency, the ratios) checked against what each release's
``scancel``, ``scontrol`` and ``sacct`` printed (``Replay``, the process boundary).
"""

from __future__ import annotations

import pytest

from hpcportal.errors import InvalidInput, NotFound, SlurmInvalidRequest, SlurmNotFound
from hpcportal.services import job_control
from hpcportal.services.efficiency import efficiency, ratios
from hpcportal.services.identity import Principal
from hpcportal.services.visibility import EVERYONE, Visibility
from hpcportal.slurm.actions import JobEfficiencyRecord, SlurmActions
from tests.unit.test_slurm_actions import RELEASES, Replay, recorded, replay


def principal(name: str) -> Principal:
    return Principal(username=name, uid=2000, gid=2000, groups=(name,), role="user")


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(
    ("name", "action", "said"),
    [
        ("scancel_own_job", "cancel", "Job {} cancelled."),
        ("scontrol_hold_own_job", "hold", "Job {} held."),
        ("scontrol_release_own_job", "release", "Job {} released."),
        ("scontrol_requeue_own_job", "requeue", "Job {} requeued."),
    ],
)
def test_control_tells_what_slurm_did(release: str, name: str, action: str, said: str) -> None:
    actions, rec = replay(release, name)
    result = job_control.control(actions, principal(rec.user), rec.job_id, action)  # type: ignore[arg-type]
    assert result.ok and result.action == action and result.signal is None
    assert result.message == said.format(rec.job_id)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("given", ["usr1", "SIGUSR1", "USR1"])
def test_a_signal_is_named_as_slurm_takes_it(release: str, given: str) -> None:
    actions, rec = replay(release, "scancel_signal_own_job")
    result = job_control.control(actions, principal(rec.user), rec.job_id, "signal", given)
    assert result.signal == "USR1"
    assert result.message == f"Sent SIGUSR1 to job {rec.job_id}."


@pytest.mark.parametrize(("job_id", "signal"), [("12;rm", "USR1"), ("1", "SEGV"), ("1", None)])
def test_bad_input_runs_nothing(job_id: str, signal: str | None) -> None:
    executor = Replay(recorded("24.11", "scancel_signal_own_job"))
    with pytest.raises(InvalidInput):
        job_control.control(SlurmActions(executor), principal("alice"), job_id, "signal", signal)
    assert executor.ran == 0


@pytest.mark.parametrize("release", RELEASES)
def test_an_ended_job_is_told_apart_from_a_refusal(release: str) -> None:
    actions, rec = replay(release, "scancel_verbose_unknown_job")
    with pytest.raises(SlurmNotFound) as caught:
        job_control.control(actions, principal(rec.user), rec.job_id, "cancel")
    assert job_control.already_ended(caught.value)
    done = SlurmInvalidRequest(
        "Slurm rejected the request: Job/step already completing or completed"
    )
    assert job_control.already_ended(done)
    assert not job_control.already_ended(SlurmInvalidRequest("Slurm rejected the request: x"))


@pytest.mark.parametrize("release", RELEASES)
def test_efficiency_of_a_finished_job(release: str) -> None:
    actions, rec = replay(release, "sacct_efficiency_completed")
    job_id = rec.argv[2]
    result = efficiency(actions, job_id)
    assert result.job_id == job_id and result.state == "COMPLETED" and result.cpus == 1
    if result.elapsed_seconds == 0:  # no ratio, not a division by zero
        assert result.cpu_efficiency is None
    else:
        assert result.cpu_efficiency == round(result.cpu_time_seconds / result.elapsed_seconds, 4)
    assert result.memory_efficiency is None
    assert result.memory_requested_mb == (None if release == "22.05" else 500.0)


@pytest.mark.parametrize("release", RELEASES)
def test_efficiency_hides_what_slurm_would_hide(release: str) -> None:
    """Under slurmdbd's PrivateData=jobs, bob may not see alice's job: not found."""
    actions, rec = replay(release, "sacct_efficiency_completed")
    bob = Visibility(username="bob", hidden=frozenset({"jobs"}))
    with pytest.raises(NotFound, match="No job"):
        efficiency(actions, rec.argv[2], bob)
    coordinator = Visibility(
        username="dave", hidden=frozenset({"jobs"}), coordinates=frozenset({"research"})
    )
    assert efficiency(replay(release, "sacct_efficiency_completed")[0], rec.argv[2], coordinator)


@pytest.mark.parametrize("release", RELEASES)
def test_efficiency_of_an_unknown_job_is_not_found(release: str) -> None:
    actions, rec = replay(release, "sacct_efficiency_unknown_job")
    with pytest.raises(NotFound):
        efficiency(actions, rec.argv[2], EVERYONE)


def test_ratios() -> None:
    record = JobEfficiencyRecord(
        job_id="7",
        user="alice",
        account="research",
        state="COMPLETED",
        elapsed_seconds=100,
        cpu_time_seconds=150.0,
        cpus=2,
        memory_requested_mb=1000.0,
        memory_max_used_mb=250.12345,
    )
    result = ratios(record)
    assert result.cpu_efficiency == 0.75
    assert result.memory_max_used_mb == 250.123
    assert result.memory_efficiency == 0.2501
    unknown = ratios(
        JobEfficiencyRecord("8", "alice", "research", "RUNNING", 0, 0.0, 0, None, None)
    )
    assert unknown.cpu_efficiency is None and unknown.memory_efficiency is None
