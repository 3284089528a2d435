"""The portal acts as a user on the suite's Slurm release, whatever it is.

``SlurmExecutor`` with the cluster's ``bin_dir`` (None for the host's 22.05, the
wrappers' folder for 24.11 and 26.05) runs ``squeue --json`` and ``sbatch`` *as
alice* through the run-as helper, both ways the portal becomes a user: ``runuser``
(the portal as root, the folder fixed in the helper's text by the portal) and ``sudo``
(the portal as its service account, the folder fixed by ``hpcportal runas install
--slurm-bin-dir``). Slurm must run the cluster's own release and see alice as the
job's owner. Run it on 24.11 with ``scripts/test.sh --slurm 24.11`` (or
``HPCPORTAL_DEVCLUSTER_DIR`` naming a 24.11 dev cluster).

The sudo half installs its own helper and sudoers file under test names, never the
shared ``/usr/local/libexec/hpcportal-runas``, and removes both afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.runas import RunAs
from hpcportal.runas.install import ensure_service_account, install
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration.service_portal import SERVICE_ACCOUNT

SCRIPT = b"#!/bin/sh\nsleep 60\n"


def sbatch_args(name: str) -> list[str]:
    return ["--parsable", "-J", name, "-t", "2", "--chdir", "/tmp", "-o", "/dev/null"]


def bin_dir_of(devcluster: dict[str, Any]) -> Path | None:
    return Path(devcluster["bin_dir"]) if devcluster.get("bin_dir") else None


def release_of(devcluster: dict[str, Any]) -> str:
    return str(devcluster.get("release") or "22.05")


def owner_and_version(executor: SlurmExecutor, job_id: int) -> tuple[str, str]:
    """Who Slurm says owns the job, and which Slurm said it (read as the portal)."""
    answer = json.loads(executor.run("squeue", ["--json", "-j", str(job_id)]).stdout)
    # 22.05's --json lists every job whatever the filter: pick ours.
    (job,) = [j for j in answer["jobs"] if j["job_id"] == job_id]
    version = answer["meta"].get("slurm", {}).get("version") or answer["meta"]["Slurm"]["version"]
    return job["user_name"], f"{version['major']}.{int(version['minor']):02d}"


def test_runuser_acts_as_alice_on_the_clusters_release(devcluster: dict[str, Any]) -> None:
    bin_dir = bin_dir_of(devcluster)
    conf = Path(devcluster["slurm_conf"])
    runas = RunAs(method="runuser", slurm_conf=conf, slurm_bin_dir=bin_dir)
    executor = SlurmExecutor(slurm_conf=conf, bin_dir=bin_dir, runas=runas, timeout=60)

    listed = json.loads(executor.run("squeue", ["--json"], as_user="alice").stdout)
    assert isinstance(listed["jobs"], list)
    version = executor.run("squeue", ["--version"], as_user="alice").stdout.decode()
    assert version.split()[-1].startswith(release_of(devcluster) + "."), version

    done = executor.run("sbatch", sbatch_args("runas-release"), as_user="alice", stdin=SCRIPT)
    job_id = int(done.stdout.decode().strip().split(";")[0])
    try:
        owner, answered_by = owner_and_version(executor, job_id)
        assert owner == "alice"
        assert answered_by == release_of(devcluster)
    finally:
        executor.run("scancel", [str(job_id)], as_user="alice")


#: Run as the service account: the portal's executor in sudo mode, as in production.
SERVICE_PROGRAM = """
import json, sys
from pathlib import Path
from hpcportal.runas import RunAs
from hpcportal.slurm.executor import SlurmExecutor

conf, helper, bin_dir = sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None
folder = Path(bin_dir) if bin_dir else None
runas = RunAs(method="sudo", helper=helper, slurm_conf=Path(conf), slurm_bin_dir=folder)
executor = SlurmExecutor(slurm_conf=Path(conf), bin_dir=folder, runas=runas, timeout=60)
listed = json.loads(executor.run("squeue", ["--json"], as_user="alice").stdout)
version = executor.run("squeue", ["--version"], as_user="alice").stdout.decode().strip()
args = ["--parsable", "-J", "runas-sudo", "-t", "2", "--chdir", "/tmp", "-o", "/dev/null"]
done = executor.run("sbatch", args, as_user="alice", stdin=b"#!/bin/sh\\nsleep 60\\n")
print(json.dumps({"jobs": len(listed["jobs"]), "version": version,
                  "job_id": int(done.stdout.decode().split(";")[0])}))
"""


@pytest.fixture
def service_helper(devcluster: dict[str, Any]) -> Iterator[Path]:
    """A helper and sudoers rule of this test's own, with the cluster's folder fixed."""
    name = f"hpcportal-runas-test-{os.getpid()}"  # sudo skips sudoers.d names with a dot
    helper = Path("/usr/local/libexec") / name
    sudoers = Path("/etc/sudoers.d") / name
    ensure_service_account(SERVICE_ACCOUNT)
    try:
        install(
            SERVICE_ACCOUNT,
            helper,
            min_uid=1000,
            sudoers=sudoers,
            slurm_bin_dir=bin_dir_of(devcluster),
        )
        yield helper
    finally:
        sudoers.unlink(missing_ok=True)
        helper.unlink(missing_ok=True)


def test_sudo_from_the_service_account_acts_as_alice_on_the_clusters_release(
    devcluster: dict[str, Any], service_helper: Path
) -> None:
    bin_dir = bin_dir_of(devcluster)
    argv = [sys.executable, "-c", SERVICE_PROGRAM, devcluster["slurm_conf"], str(service_helper)]
    result = subprocess.run(
        ["runuser", "-u", SERVICE_ACCOUNT, "--", *argv, str(bin_dir or "")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/tmp",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout.strip().splitlines()[-1])
    executor = SlurmExecutor(slurm_conf=Path(devcluster["slurm_conf"]), bin_dir=bin_dir)
    try:
        assert said["version"].split()[-1].startswith(release_of(devcluster) + ".")
        owner, answered_by = owner_and_version(executor, said["job_id"])
        assert owner == "alice"
        assert answered_by == release_of(devcluster)
    finally:
        executor.run("scancel", [str(said["job_id"])])
