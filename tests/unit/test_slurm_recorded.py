"""What accounting recorded of a job's submission, read from each release's output.

The recordings are in ``tests/fixtures/slurm/<release>/recorded`` (made by
``record-recorded.sh`` on a dev cluster of that release with
``AccountingStoreFlags=job_comment,job_script,job_env``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcportal.slurm import recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
SCRIPT = (
    "#!/bin/bash\n"
    "#SBATCH --job-name=rec-recorded\n"
    "#SBATCH --output=python-%j.out\n"
    "#SBATCH --time=00:05:00\n"
    'echo "hello from the recorded job"\n'
)


def stdout_of(release: str, name: str) -> bytes:
    text = (FIXTURES / release / "recorded" / f"{name}.txt").read_text()
    head, _, rest = text.partition("--- stdout\n")
    assert head.splitlines()[1] == "exit 0"
    return rest.rpartition("--- stderr\n")[0].encode()


@pytest.mark.parametrize("release", RELEASES)
def test_the_script_comes_back_as_it_was_submitted(release: str) -> None:
    assert recorded.parse_batch_script(stdout_of(release, "batch_script")) == SCRIPT


@pytest.mark.parametrize("release", RELEASES)
def test_a_job_without_a_batch_script_has_none(release: str) -> None:
    assert recorded.parse_batch_script(stdout_of(release, "batch_script_none")) is None
    assert recorded.parse_environment(stdout_of(release, "env_vars_none")) is None


@pytest.mark.parametrize("release", RELEASES)
def test_what_slurm_will_not_show_is_none(release: str) -> None:
    for name in ("batch_script_others_job", "batch_script_unknown_job"):
        assert stdout_of(release, name) == b""
        assert recorded.parse_batch_script(stdout_of(release, name)) is None


@pytest.mark.parametrize("release", RELEASES)
def test_the_environment_is_read_by_name(release: str) -> None:
    env = recorded.parse_environment(stdout_of(release, "env_vars"))
    assert env is not None
    assert env["RECORDED_GREETING"] == "hello world"
    assert env["HOME"] == "/home/alice" and env["SLURM_SUBMIT_DIR"] == "/tmp"
    assert all("\n" not in value for value in env.values())


def test_a_value_with_newlines_continues_on_the_next_lines() -> None:
    raw = (
        b"Environment used for 7 (must be batch to display)\n" + b"-" * 80 + b"\n"
        b"BASH_FUNC_greet%%=() {  echo hi\n}\nA=1\n\n"
    )
    assert recorded.parse_environment(raw) == {"BASH_FUNC_greet%%": "() {  echo hi\n}", "A": "1"}


@pytest.mark.parametrize("release", RELEASES)
def test_the_submit_line_and_work_dir(release: str) -> None:
    row = recorded.parse_submission(stdout_of(release, "submission"))
    assert row is not None and row.job_id > 0
    assert row.work_dir == "/home/alice"
    assert row.submit_line is not None
    assert row.submit_line.startswith(
        "sbatch --parsable --wait --chdir=/home/alice -o cmdline-%j.out"
    )


def test_a_submit_line_holding_the_separator_is_kept_whole() -> None:
    raw = b"JobIDRaw|WorkDir|SubmitLine\n9|/w|sbatch --wrap 'a | b'\n"
    row = recorded.parse_submission(raw)
    assert row is not None and row.submit_line == "sbatch --wrap 'a | b'"


def test_no_row_is_none_and_another_header_is_an_error() -> None:
    assert recorded.parse_submission(b"JobIDRaw|WorkDir|SubmitLine\n") is None
    with pytest.raises(ValueError, match="header"):
        recorded.parse_submission(b"JobID|SubmitLine|WorkDir\n9|x|/w\n")
