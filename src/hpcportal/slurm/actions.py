"""Actions inside the Slurm boundary: typed operations that act on a cluster.

``SlurmActions`` is the one place that knows which command does what: ``sbatch``
(submit, ``--test-only``), ``scancel`` (cancel, signal), ``scontrol`` (hold,
release, requeue, ``update TimeLimit``) and the ``sacct`` table efficiency reads.
Every action that changes something takes the user to act as and runs as them
through the run-as boundary, so Slurm decides who may; the answer comes back as a
frozen value, never as a Slurm dict or a line of output. Refusals stay the typed
errors of ``hpcportal.errors`` (``classify_failure``); output of a shape the portal
does not know is ``SlurmOutputUnreadable``. Services keep their rules (validation,
idempotency, messages) and talk only to this class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hpcportal.errors import SlurmInvalidRequest
from hpcportal.slurm import action_output
from hpcportal.slurm.action_output import JobEfficiencyRecord, RunningUsage, TestOnlyVerdict
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import CommandResult, SlurmExecutor, classify_failure

ControlAction = Literal["cancel", "hold", "release", "requeue", "signal"]
__all__ = [
    "BatchJob",
    "ControlAction",
    "ControlOutcome",
    "JobEfficiencyRecord",
    "RunningUsage",
    "SlurmActions",
    "SubmittedJob",
    "TestOnlyVerdict",
    "TimeLimitUpdated",
]


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """The job ``sbatch`` created, and the cluster it belongs to."""

    job_id: int
    cluster: str


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """Slurm did ``action`` (with ``signal``) to ``job_id``."""

    job_id: str
    action: ControlAction
    signal: str | None = None


@dataclass(frozen=True, slots=True)
class TimeLimitUpdated:
    """Slurm raised ``job_id``'s time limit by ``added_minutes``."""

    job_id: str
    added_minutes: int


@dataclass(frozen=True, slots=True)
class BatchJob:
    """What ``sbatch`` gets: its options (not ``--parsable``/``--test-only``), the
    script on stdin and the only environment variables beyond the clean set."""

    options: tuple[str, ...]
    script: str
    env: Mapping[str, str]


class SlurmActions:
    """Typed actions on one cluster. Thread-safe; blocking (call from a worker thread)."""

    def __init__(self, executor: SlurmExecutor, cluster: SlurmCluster | None = None) -> None:
        self._executor = executor
        self.cluster = cluster or executor.cluster

    # --- sbatch -------------------------------------------------------------------

    def submit(self, job: BatchJob, *, as_user: str) -> SubmittedJob:
        """``sbatch --parsable`` as ``as_user``: the job id, or Slurm's refusal."""
        done = self._sbatch(["--parsable", *job.options], job, as_user)
        job_id, cluster = action_output.submitted_job_id(done.stdout.decode("utf-8", "replace"))
        return SubmittedJob(job_id, cluster or self.cluster.name)

    def test_only(self, job: BatchJob, *, as_user: str) -> TestOnlyVerdict:
        """``sbatch --test-only`` as ``as_user``: no job is created."""
        done = self._sbatch(["--test-only", *job.options], job, as_user)
        return action_output.test_only_verdict(done.stdout.decode("utf-8", "replace"), done.stderr)

    def _sbatch(self, args: list[str], job: BatchJob, as_user: str) -> CommandResult:
        return self._executor.run(
            "sbatch", args, as_user=as_user, stdin=job.script.encode(), env=dict(job.env)
        )

    # --- control ------------------------------------------------------------------

    def cancel(self, job_id: str, *, as_user: str) -> ControlOutcome:
        """``scancel --verbose``: without it scancel says nothing, and exits 0, for a
        job it does not know."""
        self._scancel(["--verbose", job_id], as_user)
        return ControlOutcome(job_id, "cancel")

    def signal(self, job_id: str, signal: str, *, as_user: str) -> ControlOutcome:
        """Send ``signal`` (``USR1``) to every process of the job, batch shell included."""
        self._scancel(["--verbose", f"--signal={signal}", "--full", job_id], as_user)
        return ControlOutcome(job_id, "signal", signal)

    def hold(self, job_id: str, *, as_user: str) -> ControlOutcome:
        return self._scontrol("hold", job_id, as_user)

    def release(self, job_id: str, *, as_user: str) -> ControlOutcome:
        return self._scontrol("release", job_id, as_user)

    def requeue(self, job_id: str, *, as_user: str) -> ControlOutcome:
        return self._scontrol("requeue", job_id, as_user)

    def _scancel(self, args: list[str], as_user: str) -> None:
        done = self._executor.run("scancel", args, as_user=as_user)
        if "error:" in done.stderr.lower():
            raise classify_failure("scancel", done.stderr)  # exit 0 for an unknown job
        if not action_output.scancel_done(done.stderr):
            raise action_output.unreadable("scancel --verbose", "a report", done.stderr)

    def _scontrol(
        self, action: Literal["hold", "release", "requeue"], job_id: str, as_user: str
    ) -> ControlOutcome:
        self._quiet_scontrol([action, job_id], as_user)
        return ControlOutcome(job_id, action)

    def _quiet_scontrol(self, args: list[str], as_user: str) -> None:
        """scontrol prints nothing when it did it; an error is a refusal whatever the
        exit code."""
        done = self._executor.run("scontrol", args, as_user=as_user)
        if "error" in done.stderr.lower():
            raise classify_failure("scontrol", done.stderr)

    def add_time(self, job_id: str, minutes: int, *, as_user: str) -> TimeLimitUpdated:
        """``scontrol update JobId=N TimeLimit=+M`` as ``as_user``.

        slurmctld lets root, its SlurmUser and AdminLevel Operator/Administrator raise
        any limit, and a job's owner only a pending job's, up to the partition's
        MaxTime; anything else is ``SlurmPermissionDenied``.
        """
        if minutes <= 0:
            raise ValueError("add a positive number of minutes")
        self._quiet_scontrol(["update", f"JobId={job_id}", f"TimeLimit=+{minutes}"], as_user)
        return TimeLimitUpdated(job_id, minutes)

    # --- accounting -----------------------------------------------------------------

    def efficiency_record(
        self, job_id: str, *, as_user: str | None = None
    ) -> JobEfficiencyRecord | None:
        """``sacct -j JOB --parsable2``: the job's use against its request, or None
        when accounting has no such job. Read as the portal unless ``as_user``."""
        fields = ",".join(action_output.EFFICIENCY_FIELDS)
        args = ["-j", job_id, "--parsable2", f"--format={fields}"]
        done = self._executor.run("sacct", args, as_user=as_user)
        return action_output.efficiency_table(done.stdout.decode("utf-8", "replace"), job_id)

    def running_usage(self, job_id: str, *, as_user: str | None = None) -> RunningUsage:
        """``sstat -j JOB --allsteps --parsable2``: a running job's CPU time and peak RSS
        so far, which sacct only fills when steps end. Read as the portal unless
        ``as_user``, like ``efficiency_record``. A job with no live step (just started,
        or already ended) has ``steps == 0``; sstat's "no steps running" is not an error."""
        fields = ",".join(action_output.SSTAT_FIELDS)
        args = ["-j", job_id, "--allsteps", "--parsable2", f"--format={fields}"]
        try:
            done = self._executor.run("sstat", args, as_user=as_user)
        except SlurmInvalidRequest as exc:  # "No steps running", "couldn't get steps"
            if action_output.no_steps(str(exc)):
                return RunningUsage(job_id, 0, 0.0, None)
            raise
        return action_output.sstat_usage(done.stdout.decode("utf-8", "replace"), job_id)
