"""``cluster discover`` and ``cluster status`` against two real replicas (issue 12).

Two portals share a fresh PostgreSQL database and a Redis of this test's own (started
on a free loopback port), so they elect a leader through the lease; a third configured
server is a free port nobody listens on. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.services.operations.config_file import load_config_text
from hpcportal.services.operations.discover import discover
from hpcportal.services.operations.render import render_haproxy
from hpcportal.services.operations.status import cluster_status
from tests.integration.portal_server import free_port, portal_settings, run_portal

POSTGRES_ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    name = f"hpcportal_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed here: {exc.orig}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="hpcp-discover-redis-"))
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def replicas(
    devcluster: dict[str, Any], postgres_url: str, redis_port: int, tmp_path_factory: Any
) -> Iterator[list[str]]:
    """Two running replicas, named portal1 and portal2 in the lease."""
    urls = []
    common = {
        "database_url": postgres_url,
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "leader_lease_seconds": 3.0,
    }
    first = portal_settings(
        tmp_path_factory.mktemp("r1"), devcluster["slurm_conf"], replica_id="portal1", **common
    )
    second = portal_settings(
        tmp_path_factory.mktemp("r2"), devcluster["slurm_conf"], replica_id="portal2", **common
    )
    with run_portal(first) as one, run_portal(second) as two:
        urls = [one.url, two.url]
        yield urls


def config_text(replica_urls: list[str], redis_port: int, silent_port: int) -> str:
    ports = [url.rsplit(":", 1)[1] for url in replica_urls]
    return f"""\
# Two replicas and a third that is not started.
servers:
  - name: portal1
    address: 127.0.0.1
    port: {ports[0]}
  - name: portal2
    address: 127.0.0.1
    port: {ports[1]}
  - name: portal3
    address: 127.0.0.1
    port: {silent_port}
database:
  engine: postgresql
  primary: {{name: db1, address: 127.0.0.1, port: 5432}}
redis:
  mode: standalone
  server: {{name: r1, address: 127.0.0.1, port: {redis_port}}}
"""


def test_discover_shows_who_answers_and_who_does_not(
    replicas: list[str], redis_port: int, tmp_path: Path
) -> None:
    silent = free_port()
    config = load_config_text(config_text(replicas, redis_port, silent))
    deadline = time.monotonic() + 20
    probes = discover(config, timeout=5.0)
    while sorted(p.role for p in probes[:2]) != ["follower", "leader"]:
        assert time.monotonic() < deadline, probes
        time.sleep(0.5)
        probes = discover(config, timeout=5.0)
    assert [p.name for p in probes] == ["portal1", "portal2", "portal3"]
    for probe in probes[:2]:
        assert probe.answers, probe
        assert probe.version == "0.1.0"
    assert not probes[2].answers
    assert "ConnectError" in str(probes[2].error)

    path = tmp_path / "cluster_config.yaml"
    path.write_text(config_text(replicas, redis_port, silent))
    result = CliRunner().invoke(
        app, ["cluster", "discover", "--config", str(path), "--timeout", "5"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"portal1          {replicas[0]}") and "version 0.1.0" in lines[0]
    assert lines[2].startswith("portal3") and "no answer: ConnectError" in lines[2]


def test_discover_exits_1_when_nobody_answers(tmp_path: Path) -> None:
    path = tmp_path / "cluster_config.yaml"
    path.write_text(
        f"servers:\n  - {{name: lonely, address: 127.0.0.1, port: {free_port()}}}\n"
        "database: {engine: sqlite, path: /var/lib/hpcportal/portal.db}\n"
    )
    result = CliRunner().invoke(app, ["cluster", "discover", "--config", str(path)])
    assert result.exit_code == 1
    assert "No configured server answers." in result.output


def test_status_names_the_leader_and_every_role(
    replicas: list[str], redis_port: int, postgres_url: str, tmp_path: Path
) -> None:
    config = load_config_text(config_text(replicas, redis_port, free_port()))
    settings = portal_settings(
        tmp_path, "/nonexistent", database_url=postgres_url,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
    )  # fmt: skip
    deadline = time.monotonic() + 20
    report = cluster_status(config, settings, timeout=5.0)
    while report.leader is None and time.monotonic() < deadline:
        time.sleep(0.5)
        report = cluster_status(config, settings, timeout=5.0)
    assert report.leader is not None, report.leader_note
    roles = {probe.name: probe.role for probe in report.replicas}
    assert roles[report.leader.holder] == "leader", roles
    assert report.leader.holder in {"portal1", "portal2"}
    assert report.leader.server == report.leader.holder
    assert report.leader.token >= 1
    assert report.leader.expires_in_seconds > 0
    assert report.migration.ok and report.migration.value.startswith("at head")
    assert [(p.name, p.value) for p in report.database] == [("db1", "primary")]
    assert [(p.name, p.value) for p in report.redis] == [("r1", "master, 0 replica(s)")]

    path = tmp_path / "cluster_config.yaml"
    path.write_text(config_text(replicas, redis_port, free_port()))
    env = {
        "HPCPORTAL_DATABASE_URL": postgres_url,
        "HPCPORTAL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    result = CliRunner().invoke(
        app, ["cluster", "status", "--config", str(path), "--timeout", "5"], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"Leader:     {report.leader.holder} (server {report.leader.holder})" in result.output
    assert "Migrations: at head" in result.output
    assert "db1              primary" in result.output
    assert "r1               master, 0 replica(s)" in result.output
    assert "portal3" in result.output and "no answer" in result.output


def test_haproxy_on_the_rendered_file_sends_around_a_dead_server(
    replicas: list[str], redis_port: int, tmp_path: Path
) -> None:
    """The rendered retries and redispatch at work: portal3 is configured but down, and
    before HAProxy's checks mark it down every request sent to it is retried elsewhere."""
    front = free_port()
    text_ = config_text(replicas, redis_port, free_port()) + (
        f"front_end:\n  hosts:\n    - {{name: lb1, address: 192.0.2.2/24}}\n"
        f"  virtual_ip: 192.0.2.10\n  interface: eth0\n  virtual_router_id: 51\n"
        f"  bind_address: 127.0.0.1\n  port: {front}\n"
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy(load_config_text(text_)).replace("log /dev/log local0", ""))
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{front}", timeout=10) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "haproxy did not start"
                    time.sleep(0.05)
            # leastconn spreads these over all three at first: portal3 refuses each
            # connection, and HAProxy must redispatch it to a live replica.
            answers = [client.get("/health").status_code for _ in range(30)]
            served_by = {client.get("/ready").json().get("replica") for _ in range(10)}
    finally:
        process.kill()
        process.wait(timeout=10)
    assert answers == [200] * 30
    assert served_by <= {"portal1", "portal2"}
