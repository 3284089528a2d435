"""Every recorded action command of every release, read through ``SlurmActions``.

The recordings are in ``tests/fixtures/slurm/<release>/actions`` (made by
``record-actions.sh`` on a dev cluster of that release). ``Replay`` stands in for the
process boundary only: it checks that the operation runs exactly the recorded command
as the recorded user, and answers what Slurm answered (a failure through the real
``classify_failure``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcportal.errors import (
    SlurmError,
    SlurmInvalidRequest,
    SlurmNotFound,
    SlurmOutputUnreadable,
    SlurmPermissionDenied,
)
from hpcportal.slurm import action_output
from hpcportal.slurm.actions import (
    BatchJob,
    ControlOutcome,
    SlurmActions,
    SubmittedJob,
    TimeLimitUpdated,
)
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import CommandResult, SlurmExecutor, classify_failure

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
SCRIPT = "#!/bin/bash\n#SBATCH -J rec-action-stdin\n#SBATCH -o /dev/null\ntrue\n"


@dataclass(frozen=True)
class Recording:
    argv: tuple[str, ...]
    user: str
    stdin: bool
    code: int
    stdout: str
    stderr: str

    @property
    def job_id(self) -> str:
        """The job id the command names (its last argument, or ``JobId=N``)."""
        last = next(a for a in reversed(self.argv) if a[0].isdigit() or a.startswith("JobId="))
        return last.removeprefix("JobId=")


def recorded(release: str, name: str) -> Recording:
    text = (FIXTURES / release / "actions" / f"{name}.txt").read_text()
    head, _, rest = text.partition("--- stdout\n")
    stdout, _, stderr = rest.partition("--- stderr\n")
    command_line, exit_line = head.splitlines()[:2]
    command, _, user = command_line.removeprefix("$ ").rpartition(" (as ")
    stdin = command.endswith(" <script")
    argv = tuple(shlex.split(command.removesuffix(" <script")))
    return Recording(argv, user.rstrip(")"), stdin, int(exit_line.split()[1]), stdout, stderr)


class Replay(SlurmExecutor):
    """Answers one recorded command, and only that one."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(cluster=SlurmCluster(name="recorded"))
        self.recording = recording
        self.ran = 0

    def run(
        self,
        command: str,
        args: Sequence[str],
        *,
        as_user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        rec = self.recording
        assert (command, *args) == rec.argv, ((command, *args), rec.argv)
        # The portal reads accounting as itself; recorded as alice (PrivateData none),
        # the answer is the same.
        assert as_user == rec.user or (as_user is None and command == "sacct"), as_user
        assert (stdin == SCRIPT.encode()) if rec.stdin else not stdin
        self.ran += 1
        if rec.code != 0:
            raise classify_failure(command, rec.stderr.strip())
        return CommandResult(rec.argv, 0, rec.stdout.encode(), rec.stderr.strip(), 0.01)


def replay(release: str, name: str) -> tuple[SlurmActions, Recording]:
    rec = recorded(release, name)
    return SlurmActions(Replay(rec)), rec


def batch_job(rec: Recording, flag: str) -> BatchJob:
    """The job as the operation is given it: options without ``flag``, the script."""
    options = tuple(a for a in rec.argv[1:] if a != flag)
    return BatchJob(options, SCRIPT if rec.stdin else "", {})


# --- sbatch ------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("name", ["sbatch_parsable", "sbatch_parsable_as_used"])
def test_submit_reads_the_job_id(release: str, name: str) -> None:
    actions, rec = replay(release, name)
    job = actions.submit(batch_job(rec, "--parsable"), as_user=rec.user)
    assert job == SubmittedJob(int(rec.stdout), "recorded")


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("name", ["sbatch_test_only", "sbatch_test_only_as_used"])
def test_test_only_reads_the_estimate(release: str, name: str) -> None:
    actions, rec = replay(release, name)
    verdict = actions.test_only(batch_job(rec, "--test-only"), as_user=rec.user)
    assert verdict.start_estimate is not None and verdict.start_estimate.year == 2026
    assert verdict.start_estimate.tzinfo is not None
    assert verdict.nodes.startswith("node") and verdict.partition == "normal"
    assert verdict.message.startswith("Job ") and "sbatch:" not in verdict.message


@pytest.mark.parametrize("release", RELEASES)
def test_sbatch_refusals_are_typed(release: str) -> None:
    actions, rec = replay(release, "sbatch_bad_partition")
    with pytest.raises(SlurmInvalidRequest, match="Invalid partition name specified"):
        actions.submit(batch_job(rec, "--parsable"), as_user=rec.user)
    actions, rec = replay(release, "sbatch_test_only_bad_partition")
    with pytest.raises(SlurmInvalidRequest, match="Invalid partition name specified"):
        actions.test_only(batch_job(rec, "--test-only"), as_user=rec.user)


def test_a_dependency_on_an_unknown_job() -> None:
    """22.05 takes it as satisfied and submits; 24.11 and 26.05 refuse it."""
    actions, rec = replay("22.05", "sbatch_dependency_unknown_job")
    assert actions.submit(batch_job(rec, "--parsable"), as_user=rec.user).job_id > 0
    for release in ("24.11", "26.05"):
        actions, rec = replay(release, "sbatch_dependency_unknown_job")
        with pytest.raises(SlurmInvalidRequest, match="Job dependency problem"):
            actions.submit(batch_job(rec, "--parsable"), as_user=rec.user)


# --- scancel and scontrol ----------------------------------------------------------

Act = Callable[[SlurmActions, Recording], object]
ACTS: dict[str, Act] = {
    "cancel": lambda a, r: a.cancel(r.job_id, as_user=r.user),
    "signal": lambda a, r: a.signal(r.job_id, "USR1", as_user=r.user),
    "hold": lambda a, r: a.hold(r.job_id, as_user=r.user),
    "release": lambda a, r: a.release(r.job_id, as_user=r.user),
    "requeue": lambda a, r: a.requeue(r.job_id, as_user=r.user),
    "time": lambda a, r: a.add_time(r.job_id, 60, as_user=r.user),
}
DONE = [
    ("scancel_own_job", "cancel"),
    ("scancel_signal_own_job", "signal"),
    ("scontrol_hold_own_job", "hold"),
    ("scontrol_release_own_job", "release"),
    ("scontrol_requeue_own_job", "requeue"),
]
REFUSED = [
    ("scancel_verbose_unknown_job", "cancel", SlurmNotFound),
    ("scancel_signal_unknown_job", "signal", SlurmNotFound),
    ("scancel_others_job", "cancel", SlurmPermissionDenied),
    ("scontrol_hold_unknown_job", "hold", SlurmNotFound),
    ("scontrol_hold_others_job", "hold", SlurmPermissionDenied),
    ("scontrol_release_unknown_job", "release", SlurmNotFound),
    ("scontrol_requeue_unknown_job", "requeue", SlurmNotFound),
    ("scontrol_update_timelimit_running_own", "time", SlurmPermissionDenied),
    ("scontrol_update_timelimit_unknown_job", "time", SlurmNotFound),
]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(("name", "act"), DONE)
def test_own_job_actions_are_done(release: str, name: str, act: str) -> None:
    actions, rec = replay(release, name)
    outcome = ACTS[act](actions, rec)
    assert outcome == ControlOutcome(rec.job_id, act, "USR1" if act == "signal" else None)  # type: ignore[arg-type]
    assert isinstance(actions._executor, Replay) and actions._executor.ran == 1


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(("name", "act", "kind"), REFUSED)
def test_refusals_are_typed(release: str, name: str, act: str, kind: type[SlurmError]) -> None:
    actions, rec = replay(release, name)
    with pytest.raises(kind) as caught:
        ACTS[act](actions, rec)
    assert type(caught.value) is kind
    assert "error:" not in caught.value.message.lower(), caught.value.message  # prefix gone


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(
    "name", ["scontrol_update_timelimit_pending_own", "scontrol_update_timelimit_running_admin"]
)
def test_time_limit_raised_by_a_pending_jobs_owner_or_an_administrator(
    release: str, name: str
) -> None:
    actions, rec = replay(release, name)
    assert actions.add_time(rec.job_id, 60, as_user=rec.user) == TimeLimitUpdated(rec.job_id, 60)


@pytest.mark.parametrize("release", RELEASES)
def test_a_running_jobs_owner_is_refused_in_one_sentence(release: str) -> None:
    actions, rec = replay(release, "scontrol_update_timelimit_running_own")
    with pytest.raises(SlurmPermissionDenied) as caught:
        actions.add_time(rec.job_id, 60, as_user=rec.user)
    assert caught.value.message == f"Slurm refused: Access/permission denied for job {rec.job_id}"


@pytest.mark.parametrize("release", RELEASES)
def test_scancel_is_silent_about_an_unknown_job_without_verbose(release: str) -> None:
    """Why ``SlurmActions.cancel`` runs ``scancel --verbose``: only then is there an error."""
    rec = recorded(release, "scancel_unknown_job")
    assert (rec.code, rec.stdout, rec.stderr) == (0, "", "")
    assert recorded(release, "scancel_verbose_unknown_job").code == 0


# --- sacct -------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_efficiency_record_of_a_finished_job(release: str) -> None:
    actions, rec = replay(release, "sacct_efficiency_completed")
    record = actions.efficiency_record(rec.argv[2], as_user=rec.user)
    assert record is not None
    assert (record.job_id, record.user, record.account) == (rec.argv[2], "alice", "research")
    assert record.state == "COMPLETED" and record.cpus == 1
    assert 0 <= record.cpu_time_seconds < 1 and 0 <= record.elapsed_seconds < 60
    # 22.05 prints "16?" for a job without --mem (beyond Slurm's unit table): unknown.
    assert record.memory_requested_mb == (None if release == "22.05" else 500.0)
    assert record.memory_max_used_mb is None  # no step reported MaxRSS here


@pytest.mark.parametrize("release", RELEASES)
def test_efficiency_record_of_an_unknown_job_is_none(release: str) -> None:
    actions, rec = replay(release, "sacct_efficiency_unknown_job")
    assert actions.efficiency_record(rec.argv[2], as_user=rec.user) is None


# --- shapes the portal does not know ---------------------------------------------


def changed(name: str, *, stdout: str | None = None, stderr: str | None = None) -> Replay:
    rec = recorded("24.11", name)
    rec = Recording(
        rec.argv,
        rec.user,
        rec.stdin,
        rec.code,
        rec.stdout if stdout is None else stdout,
        rec.stderr if stderr is None else stderr,
    )
    return Replay(rec)


def test_an_unknown_sbatch_answer_is_unreadable_not_a_job_id() -> None:
    executor = changed("sbatch_parsable", stdout="Submitted batch job 12\n")
    job = batch_job(executor.recording, "--parsable")
    with pytest.raises(SlurmOutputUnreadable, match="sbatch --parsable printed a job id"):
        SlurmActions(executor).submit(job, as_user="alice")


def test_an_unknown_test_only_answer_is_unreadable() -> None:
    executor = changed("sbatch_test_only", stderr="sbatch: Job 4 may start one day\n")
    job = batch_job(executor.recording, "--test-only")
    with pytest.raises(SlurmOutputUnreadable, match="may start one day"):
        SlurmActions(executor).test_only(job, as_user="alice")


def test_scancel_that_reports_nothing_is_unreadable() -> None:
    executor = changed("scancel_own_job", stderr="")
    with pytest.raises(SlurmOutputUnreadable, match="scancel --verbose printed a report"):
        SlurmActions(executor).cancel(executor.recording.job_id, as_user="alice")


@pytest.mark.parametrize(
    ("column", "value"), [(7, "ReqTRES"), (4, "soon"), (7, "lots"), (6, "one")]
)
def test_a_changed_sacct_table_is_unreadable(column: int, value: str) -> None:
    """A renamed column (header row) or a value of another shape (job row)."""
    rec = recorded("24.11", "sacct_efficiency_completed")
    lines = [line.split("|") for line in rec.stdout.splitlines()]
    lines[0 if value == "ReqTRES" else 1][column] = value
    stdout = "\n".join("|".join(line) for line in lines) + "\n"
    executor = changed("sacct_efficiency_completed", stdout=stdout)
    with pytest.raises(SlurmOutputUnreadable, match="sacct --parsable2 printed"):
        SlurmActions(executor).efficiency_record(rec.argv[2], as_user="alice")


@pytest.mark.parametrize(
    ("value", "cpus", "mb"),
    [
        ("", 1, None),
        ("500M", 4, 500.0),
        ("500Mc", 4, 2000.0),
        ("4G", 1, 4096.0),
        ("2048K", 1, 2.0),
        ("1048576", 1, 1.0),
        ("4000Mn", 2, 4000.0),
        ("16?", 1, None),
    ],
)
def test_sizes(value: str, cpus: int, mb: float | None) -> None:
    assert action_output.size_mb(value, cpus) == mb


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("", 0.0), ("00:00.002", 0.002), ("01:02:03", 3723.0), ("2-00:00:01", 172801.0)],
)
def test_durations(value: str, seconds: float) -> None:
    assert action_output.clock_seconds(value) == pytest.approx(seconds)
