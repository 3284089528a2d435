"""Slurm's filename patterns, expanded as Slurm expands them (``slurm/filenames.py``)."""

from __future__ import annotations

import pytest

from hpcportal.slurm.filenames import PatternJob, default_pattern, expand, output_file

JOB = PatternJob(
    job_id=42, user="alice", name="train", host="node001.cluster", work_dir="/home/alice"
)
TASK = PatternJob(
    job_id=57, user="alice", name="sweep", array_job_id=50, array_task_id=7, host="node002"
)


@pytest.mark.parametrize(
    ("pattern", "job", "expected"),
    [
        ("python-%j.out", JOB, "python-42.out"),
        ("%x-%u.%j", JOB, "train-alice.42"),
        ("%J.log", JOB, "42.log"),
        ("%A_%a.out", TASK, "50_7.out"),
        ("%A.out", JOB, "42.out"),  # not an array: %A is the job id
        ("%a.out", JOB, "4294967294.out"),  # not an array: Slurm's NO_VAL
        ("%b", TASK, "7"),
        ("%N-%n-%t-%s", JOB, "node001-0-0-batch"),
        ("%5j", JOB, "00042"),
        ("%3a", TASK, "007"),
        ("%12j", JOB, "0000000042"),  # at most 10 wide
        ("%5u", JOB, "alice"),  # text is not padded
        ("100%%-%j", JOB, "100%-42"),
        ("%q-%j", JOB, "%q-42"),  # not a pattern: kept
        ("%12q", JOB, "2q"),  # Slurm keeps the number's last digit
        ("trailing%", JOB, "trailing"),
        ("no\\%j\\here", JOB, "no%jhere"),  # a backslash turns expansion off
        ("/scratch/%u/%x/%j.out", JOB, "/scratch/alice/train/42.out"),
    ],
)
def test_patterns(pattern: str, job: PatternJob, expected: str) -> None:
    assert expand(pattern, job) == expected


def test_defaults_follow_sbatch() -> None:
    assert default_pattern(JOB) == "slurm-%j.out"
    assert default_pattern(TASK) == "slurm-%A_%a.out"
    assert output_file(None, JOB) == "/home/alice/slurm-42.out"
    assert output_file(None, TASK) == "/slurm-50_7.out"


def test_relative_paths_start_in_the_work_dir() -> None:
    assert output_file("out/%j.txt", JOB) == "/home/alice/out/42.txt"
    assert output_file("/tmp/%j.txt", JOB) == "/tmp/42.txt"
    assert output_file("x", PatternJob(job_id=1, user="a", name="n", work_dir="/w/")) == "/w/x"
