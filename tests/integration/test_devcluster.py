"""The dev cluster is a real Slurm cluster: jobs run as the submitting Unix user."""

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

import pam
import pytest

from hpcportal.devcluster import DEMO_USERS, DevCluster

EXPECTED_NODES = {
    "node001": "normal",
    "node002": "normal",
    "node003": "normal",
    "node004": "normal",
    "gpu001": "gpu",
    "viz-node001": "viz",
}


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed: {result.stderr or result.stdout}"
    return result.stdout


@pytest.fixture
def alice_dir() -> Iterator[Path]:
    """A scratch directory alice owns, reachable by her (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="hpcportal-it-", dir="/tmp"))
    alice = pwd.getpwnam("alice")
    os.chown(path, alice.pw_uid, alice.pw_gid)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_status_json_is_ok_and_complete(devcluster: dict[str, Any], devcluster_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hpcportal.cli.devcluster", "status", "--json"],
        env={**os.environ, "HPCPORTAL_DEVCLUSTER_DIR": str(devcluster_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["ok"] is True
    for key in ("ok", "slurm_conf", "dir", "components", "nodes", "users", "gpu"):
        assert key in status
    assert Path(status["slurm_conf"]).is_absolute()
    assert Path(status["slurm_conf"]).is_file()
    names = {c["name"] for c in status["components"]}
    assert {"munged", "slurmdbd", "slurmctld", "mariadb"} <= names
    assert all(c["running"] for c in status["components"])
    assert {u["name"]: u["password"] for u in status["users"]} == {
        u.name: u.password for u in DEMO_USERS
    }


def test_nodes_are_idle_in_their_partitions(devcluster: dict[str, Any]) -> None:
    expected = dict(EXPECTED_NODES)
    if not devcluster["gpu"]:
        del expected["gpu001"]
    nodes = {n["name"]: n for n in devcluster["nodes"]}
    assert set(nodes) == set(expected)
    for name, partition in expected.items():
        assert nodes[name]["partitions"] == [partition]
        assert nodes[name]["state"] in {"idle", "mixed", "allocated", "completing"}


def test_job_runs_as_the_submitting_user(slurm_env: dict[str, str], alice_dir: Path) -> None:
    out = run(
        [
            "runuser",
            "-u",
            "alice",
            "--",
            "sbatch",
            "--wait",
            "--parsable",
            "--time=1",
            f"--chdir={alice_dir}",
            f"--output={alice_dir}/out-%j.txt",
            "--wrap=id -un",
        ],
        slurm_env,
        timeout=120,
    )
    job_id = out.strip().split(";")[0]
    output = alice_dir / f"out-{job_id}.txt"
    assert output.read_text().strip() == "alice"
    assert output.stat().st_uid == pwd.getpwnam("alice").pw_uid
    assert_accounted(job_id, "alice", slurm_env)


def assert_accounted(job_id: str, user: str, env: dict[str, str]) -> None:
    """The finished job reaches slurmdbd (records are sent asynchronously, so poll)."""
    deadline = time.monotonic() + 30
    rows: list[str] = []
    while time.monotonic() < deadline:
        out = run(["sacct", "-n", "-P", "-X", "-j", job_id, "--format=user,state"], env)
        rows = [line for line in out.splitlines() if line]
        if rows and rows[0] == f"{user}|COMPLETED":
            return
        time.sleep(1)
    raise AssertionError(f"sacct for job {job_id}: {rows}")


def test_gpu_job_gets_a_fake_gpu(
    devcluster: dict[str, Any], slurm_env: dict[str, str], alice_dir: Path
) -> None:
    if not devcluster["gpu"]:
        pytest.fail(f"the GPU node is missing: {devcluster['notes']}")
    out = run(
        [
            "runuser",
            "-u",
            "alice",
            "--",
            "sbatch",
            "--wait",
            "--parsable",
            "--partition=gpu",
            "--gres=gpu:1",
            f"--chdir={alice_dir}",
            f"--output={alice_dir}/gpu-%j.txt",
            "--wrap=echo $SLURM_GPUS_ON_NODE",
        ],
        slurm_env,
        timeout=120,
    )
    job_id = out.strip().split(";")[0]
    # The fake devices are plain files, so Slurm sets no CUDA_VISIBLE_DEVICES; the
    # allocation itself is what the portal shows.
    assert (alice_dir / f"gpu-{job_id}.txt").read_text().strip() == "1"


def test_associations_exist(slurm_env: dict[str, str]) -> None:
    out = run(
        [
            "sacctmgr",
            "-n",
            "-P",
            "show",
            "assoc",
            "where",
            "cluster=hpcdev",
            "format=user,account,qos",
        ],
        slurm_env,
    )
    rows = {tuple(line.split("|")[:2]): line.split("|")[2] for line in out.splitlines()}
    for user in DEMO_USERS:
        assert set(rows[(user.name, user.account)].split(",")) == {"normal", "high"}
    levels = run(["sacctmgr", "-n", "-P", "show", "user", "format=user,adminlevel"], slurm_env)
    admin = {line.split("|")[0] for line in levels.splitlines() if line.endswith("|Administrator")}
    assert {u.name for u in DEMO_USERS if u.admin} <= admin
    assert not {u.name for u in DEMO_USERS if not u.admin} & admin


def test_second_up_changes_nothing(devcluster: dict[str, Any], devcluster_dir: Path) -> None:
    cluster = DevCluster(devcluster_dir)
    layout = cluster.layout
    configs = [cluster.slurm_conf, layout.slurmdbd_conf, layout.gres_conf, layout.prometheus_yml]
    configs += [layout.prolog, layout.epilog]
    before = [p.stat().st_mtime_ns for p in configs]
    started = time.monotonic()
    status = cluster.up()
    elapsed = time.monotonic() - started
    assert status["ok"]
    assert elapsed < 30, f"a warm up took {elapsed:.1f} s"
    assert [p.stat().st_mtime_ns for p in configs] == before
    pids = {c["name"]: c["pid"] for c in devcluster["components"]}
    assert {c["name"]: c["pid"] for c in status["components"]} == pids


@pytest.mark.parametrize("user", DEMO_USERS, ids=lambda u: u.name)
def test_demo_password_logs_in_through_pam(devcluster: dict[str, Any], user: Any) -> None:
    assert pam.pam().authenticate(user.name, user.password, service="hpcportal")


def test_wrong_password_is_refused(devcluster: dict[str, Any]) -> None:
    assert not pam.pam().authenticate("alice", "not-her-password", service="hpcportal")
