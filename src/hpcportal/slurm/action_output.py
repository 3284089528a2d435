"""What Slurm's action commands print, decoded into typed values.

The shapes are the recorded ones of every supported release
(``tests/fixtures/slurm/<release>/actions/``). A line the portal must read and
cannot is ``SlurmOutputUnreadable`` (502) naming the command, never a guess: a job id
read as 0 or an efficiency computed from a shifted column would be worse than an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from hpcportal.errors import SlurmOutputUnreadable
from hpcportal.slurm import parse

#: ``sbatch --parsable``: ``JOBID`` or ``JOBID;CLUSTER``.
_PARSABLE = re.compile(r"^(?P<job>\d+)(?:;(?P<cluster>[^\s;]+))?$")
#: ``sbatch --test-only``'s estimate. 26.05 writes a word between the time and "using"
#: ("... at 2026-12-02T11:42:15 a using 1 processors ..."), 22.05 and 24.11 none.
_TEST_ONLY = re.compile(
    r"Job \d+ to start at (?P<start>\S+)(?: \S+)? using (?P<cpus>\d+) processors on nodes "
    r"(?P<nodes>\S+)(?: in partition (?P<partition>\S+))?"
)
#: ``scancel --verbose``'s report of what it did (22.05 writes plugin lines before it).
_SCANCEL_DONE = re.compile(r"^scancel: (?:Terminating job|Signal \d+ to (?:full )?job) \S+$")
#: The columns ``efficiency_table`` reads, in the order ``sacct --format`` is given them.
EFFICIENCY_FIELDS = (
    "JobID",
    "User",
    "Account",
    "State",
    "Elapsed",
    "TotalCPU",
    "AllocCPUS",
    "ReqMem",
    "MaxRSS",
    "NNodes",
)
_CLOCK = re.compile(r"^(?:(?P<days>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)$")
_SIZE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[KMGTP?]?)(?P<per>[cn]?)$")
_UNIT_MB = {"": 1 / (1024 * 1024), "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
_UNIT_MB["P"] = 1024.0**3


@dataclass(frozen=True, slots=True)
class TestOnlyVerdict:
    """``sbatch --test-only`` accepted the job: when and where it would start.

    A refusal is raised as Slurm's typed error instead."""

    __test__ = False  # not a pytest test class

    start_estimate: datetime | None
    nodes: str
    partition: str | None
    message: str


@dataclass(frozen=True, slots=True)
class JobEfficiencyRecord:
    """What accounting says a job used against what it asked for: its allocation line
    of ``sacct --parsable2`` and the peak ``MaxRSS`` of its steps (None when no step
    reported one)."""

    job_id: str
    user: str
    account: str
    state: str
    elapsed_seconds: int
    cpu_time_seconds: float
    cpus: int
    memory_requested_mb: float | None
    memory_max_used_mb: float | None


def unreadable(command: str, what: str, text: str) -> SlurmOutputUnreadable:
    shown = text.strip()[:200] or "nothing"
    return SlurmOutputUnreadable(f"{command} printed {what} the portal cannot read: {shown!r}")


def submitted_job_id(stdout: str) -> tuple[int, str | None]:
    """The job id (and cluster, when Slurm names one) of ``sbatch --parsable``."""
    match = _PARSABLE.fullmatch(stdout.strip())
    if match is None or int(match["job"]) == 0:
        raise unreadable("sbatch --parsable", "a job id", stdout)
    return int(match["job"]), match["cluster"]


def test_only_verdict(stdout: str, stderr: str) -> TestOnlyVerdict:
    """``sbatch --test-only``'s estimate (written to stderr in every release)."""
    text = (stderr or stdout).strip()
    match = _TEST_ONLY.search(text)
    if match is None:
        raise unreadable("sbatch --test-only", "an estimate", text)
    try:
        start: datetime | None = datetime.fromisoformat(match["start"]).replace(tzinfo=UTC)
    except ValueError:
        start = None  # "Unknown" when Slurm cannot tell
    line = next(ln for ln in text.splitlines() if match["nodes"] in ln)
    return TestOnlyVerdict(
        start_estimate=start,
        nodes=match["nodes"],
        partition=match["partition"],
        message=line.strip().removeprefix("sbatch: "),
    )


def scancel_done(stderr: str) -> bool:
    """Did ``scancel --verbose`` report what it did (and nothing went wrong)?"""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return any(_SCANCEL_DONE.fullmatch(ln) for ln in lines)


def clock_seconds(value: str) -> float:
    """``[D-]HH:MM:SS``, ``MM:SS.mmm`` (sacct's TotalCPU) or empty -> seconds."""
    if not value:
        return 0.0
    match = _CLOCK.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a duration: {value!r}")
    days, hours = int(match["days"] or 0), int(match["h"] or 0)
    return days * 86400 + hours * 3600 + int(match["m"]) * 60 + float(match["s"])


def size_mb(value: str, cpus: int = 1) -> float | None:
    """``1234K``, ``500M``, ``4G``, ``500Mc`` (per CPU: times ``cpus``), ``4000Mn`` or
    plain bytes -> MB; None for empty and for 22.05's ``16?`` (a number beyond Slurm's
    unit table: the per-CPU flag bit read as megabytes)."""
    text = value.strip()
    if not text:
        return None
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {value!r}")
    if match["unit"] == "?":
        return None
    size = float(match["n"]) * _UNIT_MB[match["unit"]]
    return size * max(cpus, 1) if match["per"] == "c" else size


def efficiency_table(stdout: str, job_id: str) -> JobEfficiencyRecord | None:
    """``job_id``'s line of ``sacct -j JOB --parsable2 --format=EFFICIENCY_FIELDS`` with
    the peak ``MaxRSS`` of its steps; None when sacct lists no such job."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = lines[0].split("|") if lines else []
    if any(name not in header for name in EFFICIENCY_FIELDS):
        raise unreadable("sacct --parsable2", "a table", stdout)
    rows = parse.parse_table(stdout.encode())
    job = next((r for r in rows if r.get("JobID") == job_id), None)
    if job is None:
        return None
    steps = [r for r in rows if r.get("JobID", "").startswith(f"{job_id}.")]
    try:
        cpus = int(job["AllocCPUS"] or 0)
        used = [m for m in (size_mb(s.get("MaxRSS", "")) for s in steps) if m is not None]
        return JobEfficiencyRecord(
            job_id=job_id,
            user=job["User"],
            account=job["Account"],
            state=job["State"],
            elapsed_seconds=int(clock_seconds(job["Elapsed"])),
            cpu_time_seconds=clock_seconds(job["TotalCPU"]),
            cpus=cpus,
            memory_requested_mb=size_mb(job["ReqMem"], cpus),
            memory_max_used_mb=max(used) if used else None,
        )
    except (KeyError, ValueError) as exc:
        raise unreadable("sacct --parsable2", f"a row ({exc})", stdout) from exc


#: The columns ``sstat_usage`` reads. sstat has no TotalCPU (22.05, 24.11 and 26.05's
#: man pages list AveCPU, MinCPU, NTasks): a step's CPU time so far is AveCPU x NTasks.
SSTAT_FIELDS = ("JobID", "AveCPU", "NTasks", "MaxRSS")


@dataclass(frozen=True, slots=True)
class RunningUsage:
    """What a running job's live steps used so far (``sstat --allsteps``): CPU time
    summed over steps (AveCPU x NTasks each) and the highest step MaxRSS; ``steps``
    is how many steps reported (0: none yet, e.g. the job just started)."""

    job_id: str
    steps: int
    cpu_time_seconds: float
    max_rss_mb: float | None


def sstat_usage(stdout: str, job_id: str) -> RunningUsage:
    """``sstat -j JOB --allsteps --parsable2 --format=SSTAT_FIELDS``: the job's steps
    summed. A header alone (or nothing) is a job with no live step yet."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return RunningUsage(job_id, 0, 0.0, None)
    header = lines[0].split("|")
    if any(name not in header for name in SSTAT_FIELDS):
        raise unreadable("sstat --parsable2", "a table", stdout)
    rows = [r for r in parse.parse_table(stdout.encode())
            if r.get("JobID", "").startswith(f"{job_id}.")]  # fmt: skip
    try:
        cpu = sum(clock_seconds(r["AveCPU"]) * int(r["NTasks"] or 1) for r in rows)
        rss = [m for m in (size_mb(r["MaxRSS"]) for r in rows) if m is not None]
    except (KeyError, ValueError) as exc:
        raise unreadable("sstat --parsable2", f"a row ({exc})", stdout) from exc
    return RunningUsage(job_id, len(rows), cpu, max(rss) if rss else None)


#: sstat's words for a job without a live step: just started (its batch step not yet
#: launched) or already ended; 22.05 and 24.11 "for job N", 26.05 "for JobId=N".
_NO_STEPS = re.compile(r"no steps running|couldn't get steps", re.IGNORECASE)


def no_steps(message: str) -> bool:
    """Does sstat's error say the job has no live step (rather than a real failure)?"""
    return _NO_STEPS.search(message) is not None
