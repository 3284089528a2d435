"""A running job's use so far from ``sstat`` (``SlurmActions.running_usage``), on real
answers recorded per release (``tests/fixtures/slurm/record-sstat.sh``: alice's
CPU-busy job with 2 CPUs and 1000M), and the efficiency figures made from it."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcportal.errors import SlurmOutputUnreadable
from hpcportal.services.efficiency import Efficiency
from hpcportal.services.monitoring.job_efficiency import measure
from hpcportal.services.monitoring.service import JobWindow
from hpcportal.slurm.action_output import RunningUsage, sstat_usage
from hpcportal.slurm.actions import SlurmActions
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import CommandResult, SlurmExecutor, classify_failure

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")


class Recorded(SlurmExecutor):
    """Answers the one recorded sstat command, as it was answered."""

    def __init__(self, release: str, name: str) -> None:
        super().__init__(cluster=SlurmCluster(name="recorded"))
        text = (FIXTURES / release / "actions" / f"{name}.txt").read_text()
        head, _, rest = text.partition("--- stdout\n")
        self.stdout, _, self.stderr = rest.partition("--- stderr\n")
        command_line, exit_line = head.splitlines()[:2]
        command = command_line.removeprefix("$ ").rpartition(" (as ")[0]
        self.argv = tuple(shlex.split(command))
        self.code = int(exit_line.split()[1])

    @property
    def job_id(self) -> str:
        return self.argv[2]

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
        assert (command, *args) == self.argv, ((command, *args), self.argv)
        if self.code != 0:
            raise classify_failure(command, self.stderr.strip())
        return CommandResult(self.argv, 0, self.stdout.encode(), self.stderr.strip(), 0.01)


def usage(release: str, name: str) -> tuple[RunningUsage, Recorded]:
    executor = Recorded(release, name)
    return SlurmActions(executor).running_usage(executor.job_id), executor


@pytest.mark.parametrize("release", RELEASES)
def test_a_running_job_reports_its_batch_step(release: str) -> None:
    got, rec = usage(release, "sstat_efficiency_running")
    assert got.job_id == rec.job_id
    assert got.steps >= 1
    # The recording's own numbers: AveCPU x NTasks of each step, the highest MaxRSS.
    rows = [ln.split("|") for ln in rec.stdout.splitlines()[1:] if ln.strip()]
    assert got.steps == len(rows)
    assert got.cpu_time_seconds == sum(
        sum(int(p) * 60**i for i, p in enumerate(reversed(r[1].split(":")))) * int(r[2])
        for r in rows
    )
    assert got.max_rss_mb == max(int(r[3].removesuffix("K")) for r in rows) / 1024
    assert got.max_rss_mb is not None and 1 < got.max_rss_mb < 1000


@pytest.mark.parametrize("release", RELEASES)
def test_an_unknown_job_has_no_steps(release: str) -> None:
    got, _ = usage(release, "sstat_efficiency_unknown_job")
    assert got == RunningUsage("99999999", 0, 0.0, None)


@pytest.mark.parametrize("release", RELEASES)
def test_just_started_is_no_steps_or_a_first_reading(release: str) -> None:
    """sstat exits 0 with "No steps running" on stderr and a header alone on stdout
    until the batch step starts (recorded so on each release but a fast one)."""
    got, rec = usage(release, "sstat_efficiency_just_started")
    if "No steps running" in rec.stderr:
        assert got == RunningUsage(rec.job_id, 0, 0.0, None)
    else:
        assert got.steps >= 1 and got.max_rss_mb is not None


def test_steps_are_summed_and_the_peak_is_the_highest() -> None:
    text = ("JobID|AveCPU|NTasks|MaxRSS\n7.batch|00:01:00|1|2048K\n"
            "7.0|00:00:30|4|4M\n8.0|00:10:00|1|9G\n")  # fmt: skip
    assert sstat_usage(text, "7") == RunningUsage("7", 2, 60 + 120, 4.0)


def test_another_table_is_unreadable() -> None:
    with pytest.raises(SlurmOutputUnreadable):
        sstat_usage("JobID|AveRSS\n7.batch|2048K\n", "7")
    with pytest.raises(SlurmOutputUnreadable):
        sstat_usage("JobID|AveCPU|NTasks|MaxRSS\n7.batch|soon|1|2048K\n", "7")


BASE = Efficiency(job_id="7", state="RUNNING", elapsed_seconds=0, cpus=2, cpu_time_seconds=0,
                  cpu_efficiency=None, memory_requested_mb=1000.0, memory_max_used_mb=None,
                  memory_efficiency=None)  # fmt: skip
START = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
RUNNING = JobWindow(7, ["node001"], START, None)


def test_a_running_job_without_an_exporter_takes_sstat() -> None:
    read = RunningUsage("7", 1, 90.0, 250.0)
    got = asyncio.run(measure(None, BASE, RUNNING, 0, read, now=START.timestamp() + 60))
    assert got.figures.cpu.source == got.figures.memory.source == "sstat"
    assert got.figures.cpu.value == 0.75  # 90 s over 2 CPUs x 60 s
    assert got.figures.memory.value == 0.25  # 250 of 1000 MB
    assert got.cpu_efficiency is None  # the accounting fields are as before


def test_no_step_yet_says_so() -> None:
    read = RunningUsage("7", 0, 0.0, None)
    got = asyncio.run(measure(None, BASE, RUNNING, 0, read, now=START.timestamp() + 5))
    assert got.figures.cpu.value is None and got.figures.cpu.why == "no_steps"
    assert got.figures.memory.why == "no_steps"


def test_without_a_reading_a_running_job_waits_for_accounting() -> None:
    got = asyncio.run(measure(None, BASE, RUNNING, 0))
    assert got.figures.cpu.why == "job_running"
