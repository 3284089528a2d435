"""Direct Slurm commands for tests, to compare the portal with Slurm itself."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any


def env_for(slurm_conf: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SLURM_CONF": slurm_conf, "TZ": "UTC"}


def run(slurm_conf: str, argv: list[str], *, user: str | None = None) -> str:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    proc = subprocess.run(
        argv,
        env=env_for(slurm_conf),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/tmp",
    )
    assert proc.returncode == 0, f"{argv} failed: {proc.stderr}"
    return proc.stdout


def json_of(slurm_conf: str, argv: list[str]) -> dict[str, Any]:
    return dict(json.loads(run(slurm_conf, argv)))


def all_jobs(slurm_conf: str) -> list[dict[str, Any]]:
    """``squeue --json`` of every job slurmctld holds, finished ones included (until
    ``MinJobAge``): 22.05 lists those by default, 23.02 and later only with
    ``--states=all`` (which 22.05 accepts too)."""
    return list(json_of(slurm_conf, ["squeue", "--json", "--all", "--states=all"])["jobs"])


def all_nodes(slurm_conf: str) -> list[dict[str, Any]]:
    """Every node as Slurm's JSON lists it: ``sinfo --json`` on 22.05; from 23.02
    ``sinfo --json`` groups nodes (key ``sinfo``), so ``scontrol --json show nodes``."""
    listed = json_of(slurm_conf, ["sinfo", "--json"])
    if "nodes" in listed:
        return list(listed["nodes"])
    return list(json_of(slurm_conf, ["scontrol", "--json", "show", "nodes"])["nodes"])


def base_state(value: str | list[str]) -> str:
    """A job's or node's state word: 22.05 writes one string, 23.02 on a list whose
    first item is the base state and the rest flags (``["IDLE", "DRAIN"]``)."""
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return value


def sbatch(slurm_conf: str, user: str, *args: str) -> int:
    """Submit as ``user`` from their home and return the job id."""
    out = run(
        slurm_conf,
        [
            "sbatch",
            "--parsable",
            f"--chdir=/home/{user}",
            "-o",
            f"/home/{user}/slurm-%j.out",
            *args,
        ],
        user=user,
    )
    return int(out.strip().split(";")[0])


def scancel(slurm_conf: str, *job_ids: int, missing_ok: bool = False) -> None:
    """Cancel jobs; ``missing_ok`` for clean-up, where a job may have ended already."""
    if not job_ids:
        return
    if missing_ok:
        subprocess.run(
            ["scancel", *map(str, job_ids)],
            env=env_for(slurm_conf),
            capture_output=True,
            timeout=60,
            check=False,
        )
    else:
        run(slurm_conf, ["scancel", *map(str, job_ids)])


def job_state(slurm_conf: str, job_id: int) -> str:
    """The job's state as squeue prints it (``PENDING``, ``RUNNING``), or "" once it left."""
    return run(slurm_conf, ["squeue", "-h", "-j", str(job_id), "-o", "%T"]).strip()


def wait_running(slurm_conf: str, *job_ids: int, timeout: float = 60.0) -> None:
    """Wait until every job runs, so a test's "blocker" really holds its nodes."""
    deadline = time.monotonic() + timeout
    waiting = list(job_ids)
    while waiting:
        waiting = [j for j in waiting if job_state(slurm_conf, j) != "RUNNING"]
        assert not waiting or time.monotonic() < deadline, f"jobs {waiting} never started"
        if waiting:
            time.sleep(0.3)
