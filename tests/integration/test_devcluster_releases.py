"""A dev cluster of a newer Slurm (24.11, 26.05) from its Debian root, end to end.

Runs only for the releases named in ``$HPCPORTAL_TEST_SLURM_RELEASES`` (for example
``24.11`` or ``24.11,26.05``), because a first run makes the root with debootstrap
(about a minute and 290 MB per release) and each cluster takes its own daemons.
Each test brings up its own cluster in a new directory, beside whatever dev cluster
already runs, submits as alice through the cluster's ``bin/`` wrappers exactly as a
person would (``runuser -u alice -- DIR/bin/sbatch``), and purges it at the end.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.devcluster import DevCluster
from hpcportal.devcluster.releases import RELEASES

RELEASES_ENV = "HPCPORTAL_TEST_SLURM_RELEASES"
ROOT_RELEASES = [name for name, release in RELEASES.items() if release.from_root]
UP_TIMEOUT = 900  # a first run makes the root with debootstrap
RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"


def requested_releases() -> set[str]:
    return {r.strip() for r in os.environ.get(RELEASES_ENV, "").split(",") if r.strip()}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpcportal.cli.devcluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def as_alice(argv: list[str], timeout: float = 60) -> str:
    """Run ``argv`` as alice with an environment that names no Slurm config at all:
    the wrapper alone must find its cluster."""
    result = subprocess.run(
        [RUNUSER, "-u", "alice", "--", *argv],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: {result.stderr or result.stdout}"
    return result.stdout


def wait_for(what: str, probe: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


@pytest.fixture(params=ROOT_RELEASES)
def release(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name not in requested_releases():
        pytest.skip(f"Slurm {name} runs only when {RELEASES_ENV} names it")
    return name


@pytest.fixture
def cluster_dir(release: str) -> Iterator[Path]:
    """A new cluster directory (its parent traversable by all); purged afterwards."""
    parent = Path(tempfile.mkdtemp(prefix=f"hpcportal-slurm-{release}-", dir="/tmp"))
    parent.chmod(0o755)
    path = parent / "cluster"
    yield path
    cli("down", "--purge", "--dir", str(path))
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hpcportal-it-", dir="/tmp"))
    alice = pwd.getpwnam("alice")
    os.chown(path, alice.pw_uid, alice.pw_gid)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_release_cluster_runs_alices_job_and_accounts_it(
    release: str, cluster_dir: Path, alice_dir: Path
) -> None:
    default = DevCluster()
    default_was_ok = default.is_up()

    up = cli("up", "--slurm", release, "--dir", str(cluster_dir), timeout=UP_TIMEOUT)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"slurm: {release} (slurm-wlm {release}." in up.stdout

    status = json.loads(cli("status", "--json", "--dir", str(cluster_dir)).stdout)
    assert status["ok"], status["notes"]
    assert status["release"] == release
    assert status["slurm_version"].startswith(f"slurm-wlm {release}.")
    bin_dir = Path(status["bin_dir"])
    pids = {c["name"]: c["pid"] for c in status["components"]}
    again = DevCluster(cluster_dir).up()  # the directory remembers its release
    assert again["release"] == release
    assert {c["name"]: c["pid"] for c in again["components"]} == pids
    assert {"sbatch", "squeue", "sacct", "scontrol"} <= {p.name for p in bin_dir.iterdir()}

    job_id = (
        as_alice(
            [
                str(bin_dir / "sbatch"),
                "--parsable",
                "--time=2",
                f"--chdir={alice_dir}",
                f"--output={alice_dir}/out-%j.txt",
                # Jobs run in the host's userland (python3 is not in the root), and srun in
                # a job is the release's (the wrapper put bin/ first on the job's PATH).
                "--wrap=id -un; echo $HOME; python3 -c 'print(42)'; srun --version; sleep 4",
            ]
        )
        .split(";")[0]
        .strip()
    )

    def queued() -> dict[str, Any] | None:
        answer = json.loads(as_alice([str(bin_dir / "squeue"), "--json", "-j", job_id]))
        jobs = [j for j in answer["jobs"] if str(j["job_id"]) == job_id]
        return {"meta": answer["meta"], "job": jobs[0]} if jobs else None

    seen = wait_for(f"job {job_id} in squeue --json", queued)
    assert seen["job"]["user_name"] == "alice"
    assert seen["meta"]["slurm"]["release"].startswith(f"{release}.")

    def accounted() -> dict[str, Any] | None:
        answer = json.loads(as_alice([str(bin_dir / "sacct"), "--json", "-j", job_id]))
        jobs = [j for j in answer["jobs"] if str(j["job_id"]) == job_id]
        done = jobs and jobs[0]["state"]["current"] == ["COMPLETED"]
        return jobs[0] if done else None

    record = wait_for(f"job {job_id} COMPLETED in sacct --json", accounted, timeout=90)
    assert record["user"] == "alice"
    output = alice_dir / f"out-{job_id}.txt"
    assert output.read_text().splitlines()[:4] == [
        "alice",
        "/home/alice",
        "42",
        status["slurm_version"],
    ]
    assert output.stat().st_uid == pwd.getpwnam("alice").pw_uid

    down = cli("down", "--dir", str(cluster_dir))
    assert down.returncode == 0, down.stderr
    assert "slurmctld" in down.stdout
    assert not DevCluster(cluster_dir).status()["ok"]
    if default_was_ok:  # the other cluster, side by side, was not touched
        assert default.is_up()
