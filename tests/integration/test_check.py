"""``hpcportal check`` against real parts: the live dev cluster (Slurm 22.05), a
migrated database, and a Redis server of the test's own on a free loopback port
(started, then stopped for the failing case; the shared Redis on 6379 is never
touched). The CLI runs as a separate process, as an administrator would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.runas.install import helper_text, sudoers_rule
from hpcportal.services.operations import checks

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HPCPORTAL = [sys.executable, "-m", "hpcportal.cli.main"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("the test's redis-server did not start")
            time.sleep(0.05)
    try:
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """A migrated database and the dev cluster, nothing from /etc."""
    database = f"sqlite:///{tmp_path / 'portal.db'}"
    upgrade(Settings(database_url=database))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCPORTAL_")}
    env.update(
        HPCPORTAL_CONFIG="",
        HPCPORTAL_SECRETS_DIR="",
        HPCPORTAL_DATABASE_URL=database,
        HPCPORTAL_DEVCLUSTER_DIR=str(REPO / ".devcluster"),
        # The demo runs the portal as root (runuser): no helper or sudoers rule needed.
        HPCPORTAL_RUNAS_METHOD="runuser",
        # Redis means replicas, and replicas need one signing key (checked too).
        HPCPORTAL_JWT_SECRET="check-test-secret-long-enough-for-hs256-signing",
    )
    return env


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HPCPORTAL, "check"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_check_passes_with_everything_up(
    environment: dict[str, str], own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    environment["HPCPORTAL_REDIS_URL"] = own_redis[0]
    result = run_check(environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   slurm: Slurm 22.05" in result.stdout
    assert "ok   database: " in result.stdout and "migrations at head" in result.stdout
    assert f"ok   redis: {own_redis[0]}, Redis " in result.stdout
    assert "ok   signing key: jwt_secret configured" in result.stdout
    assert "check-test-secret" not in result.stdout
    assert "All checks passed." in result.stdout


def test_check_names_a_stopped_redis_and_the_fix(
    environment: dict[str, str], own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = own_redis
    server.terminate()
    server.wait(10)
    environment["HPCPORTAL_REDIS_URL"] = url
    result = run_check(environment)
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(f"FAIL redis: {url}: "), result.stdout
    fix = lines[lines.index(failed[0]) + 1]
    assert fix.strip().startswith("fix: Start Redis")
    assert "1 check(s) failed: redis" in result.stderr
    assert "ok   slurm:" in result.stdout  # the other checks still ran


def test_check_refuses_a_database_behind_its_migrations(
    environment: dict[str, str], tmp_path: Path
) -> None:
    old = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(Settings(database_url=old), revision="0001")
    environment["HPCPORTAL_DATABASE_URL"] = old
    result = run_check(environment)
    assert result.returncode == 1
    assert "FAIL database: " in result.stdout and "is at migration 0001," in result.stdout
    assert "fix: Run `hpcportal db upgrade`" in result.stdout


def test_helper_and_sudoers_checks(tmp_path: Path) -> None:
    helper = tmp_path / "hpcportal-runas"
    helper.write_text(helper_text(1000))
    settings = Settings(runas_method="sudo", runas_helper=helper)
    assert checks.check_runas_helper(settings).outcome == "ok"
    helper.write_text(helper_text(1000).replace("def ", "def  ", 1))
    altered = checks.check_runas_helper(settings)
    assert altered.outcome == "failed" and "not the helper of hpcportal" in altered.detail
    assert altered.fix is not None and "hpcportal runas install" in altered.fix
    helper.unlink()
    assert checks.check_runas_helper(settings).outcome == "failed"

    rule = tmp_path / "sudoers"
    rule.write_text(sudoers_rule("hpcportal", helper))
    rule.chmod(0o440)
    assert checks.check_sudoers(settings, rule).outcome == "ok"
    rule.chmod(0o640)
    rule.write_text(sudoers_rule("hpcportal", helper) + "this is not sudoers\n")
    broken = checks.check_sudoers(settings, rule)
    assert broken.outcome == "failed" and "visudo refuses" in broken.detail
    other = checks.check_sudoers(Settings(runas_method="sudo", runas_helper=Path("/x")), rule)
    assert other.outcome == "failed" and "does not name /x" in other.detail


def test_replicas_without_a_shared_signing_key_fail_the_check(
    environment: dict[str, str], own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    del environment["HPCPORTAL_JWT_SECRET"]
    environment["HPCPORTAL_REDIS_URL"] = own_redis[0]
    result = run_check(environment)
    assert result.returncode == 1
    assert "FAIL signing key: jwt_secret is not configured" in result.stdout
    assert "/etc/hpcportal/secrets/jwt_secret" in result.stdout
