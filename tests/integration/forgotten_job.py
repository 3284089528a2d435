"""alice's finished job that slurmctld will forget, for the finished-jobs browser test.

Submitted at the start of the session (``conftest.forgotten_job_head_start``) so its
``MinJobAge`` wait overlaps the tests that run before the module that needs it.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass

from tests.integration import slurm_cli

SCRIPT = """#!/bin/bash
#SBATCH --job-name=forgotten-py
#SBATCH --output=python-%j.out
#SBATCH --time=00:02:00
echo "answer: $((6 * 7)) from $SLURM_JOB_ID"
"""


@dataclass(frozen=True)
class ForgettableJob:
    job_id: int
    script: str

    def remove_files(self) -> None:
        """The script and the job's output, removed after the module."""
        output = f"/home/alice/python-{self.job_id}.out"
        subprocess.run(["rm", "-f", self.script, output], check=False)


def submit_forgettable(conf: str) -> ForgettableJob:
    """Write the script into alice's home and submit it as alice."""
    path = f"/home/alice/forgotten-{uuid.uuid4().hex[:8]}.sh"
    subprocess.run(
        ["runuser", "-u", "alice", "--", "sh", "-c", 'cat > "$1"', "sh", path],
        input=SCRIPT,
        text=True,
        check=True,
    )
    out = slurm_cli.run(conf, ["sbatch", "--parsable", "--chdir=/home/alice", path], user="alice")
    return ForgettableJob(int(out.strip().split(";")[0]), path)
