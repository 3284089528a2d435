"""What each release's action commands print, read as the portal reads it.

The recordings are in ``tests/fixtures/slurm/<release>/actions`` (made by
``record-actions.sh`` on a dev cluster of that release).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcportal.errors import SlurmInvalidRequest, SlurmNotFound, SlurmPermissionDenied
from hpcportal.services.submit import _TEST_ONLY
from hpcportal.slurm.executor import classify_failure

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")


def recorded(release: str, name: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one recorded command."""
    text = (FIXTURES / release / "actions" / f"{name}.txt").read_text()
    head, _, rest = text.partition("--- stdout\n")
    stdout, _, stderr = rest.partition("--- stderr\n")
    code = int(head.splitlines()[1].removeprefix("exit "))
    return code, stdout, stderr


@pytest.mark.parametrize("release", RELEASES)
def test_parsable_prints_the_job_id(release: str) -> None:
    code, stdout, _ = recorded(release, "sbatch_parsable")
    assert code == 0 and int(stdout.strip().split(";")[0]) > 0


@pytest.mark.parametrize("release", RELEASES)
def test_test_only_estimate_is_read(release: str) -> None:
    code, _, stderr = recorded(release, "sbatch_test_only")
    match = _TEST_ONLY.search(stderr)
    assert code == 0 and match is not None, stderr
    assert datetime.fromisoformat(match["start"]).year >= 2026
    assert match["nodes"] == "node001"


@pytest.mark.parametrize("release", RELEASES)
def test_refusals_become_typed_errors(release: str) -> None:
    for name, kind in [
        ("sbatch_bad_partition", SlurmInvalidRequest),
        ("scancel_verbose_unknown_job", SlurmNotFound),
        ("scancel_signal_unknown_job", SlurmNotFound),
        ("scontrol_hold_unknown_job", SlurmNotFound),
        ("scontrol_requeue_unknown_job", SlurmNotFound),
        ("scancel_others_job", SlurmPermissionDenied),
        ("scontrol_hold_others_job", SlurmPermissionDenied),
    ]:
        _, _, stderr = recorded(release, name)
        assert "error" in stderr.lower() or "invalid" in stderr.lower(), (name, stderr)
        assert type(classify_failure(name.split("_")[0], stderr)) is kind, (release, name)


def test_a_dependency_on_an_unknown_job() -> None:
    """22.05 takes it as satisfied and submits; 24.11 and 26.05 refuse it."""
    assert recorded("22.05", "sbatch_dependency_unknown_job")[0] == 0
    for release in ("24.11", "26.05"):
        code, _, stderr = recorded(release, "sbatch_dependency_unknown_job")
        assert code == 1 and "Job dependency problem" in stderr
        assert type(classify_failure("sbatch", stderr)) is SlurmInvalidRequest


@pytest.mark.parametrize("release", RELEASES)
def test_scancel_is_silent_about_an_unknown_job_without_verbose(release: str) -> None:
    """Why services.job_control runs ``scancel --verbose``: only then is there an error."""
    assert recorded(release, "scancel_unknown_job") == (0, "", "")
    code, _, stderr = recorded(release, "scancel_verbose_unknown_job")
    assert code == 0 and "Invalid job id specified" in stderr


@pytest.mark.parametrize("release", RELEASES)
def test_a_refusal_reads_as_slurms_reason_alone(release: str) -> None:
    """26.05's scontrol writes "slurm_suspend error:Invalid ..." (no space)."""
    _, _, stderr = recorded(release, "scontrol_hold_unknown_job")
    error = classify_failure("scontrol", stderr)
    assert error.message == "Slurm does not know that: Invalid job id specified"
    _, _, stderr = recorded(release, "sbatch_bad_partition")
    error = classify_failure("sbatch", stderr)
    assert error.message == (
        "Slurm rejected the request: Batch job submission failed: Invalid partition name specified"
    )
