"""Several real ``hpcportal serve`` processes behind a real HAProxy, on PostgreSQL and
a Redis of their own, all on loopback (used by ``test_replicas.py`` and
``bench/replicas.py``).

Every process started here is a child of the test and is killed when the group ends,
whatever happened. Replicas run as root (``runas_method`` auto: ``runuser``), share one
JWT secret and one secret-key file, and are started one after the other so the first
is the leader and creates the key file alone. HAProxy's configuration is the one
``hpcportal cluster render`` writes (``render_haproxy``), with its ``bind`` moved to a
free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.services.operations.cluster_config import ClusterConfig
from hpcportal.services.operations.render import render_haproxy

POSTGRES_ADMIN_URL = os.environ.get(
    "HPCPORTAL_TEST_POSTGRES_URL",
    "postgresql+psycopg://hpcportal_test:hpcportal-test@127.0.0.1:5432/postgres",
)
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECRET = "replica-group-signing-key-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> dict[str, object] | None:
        """``/ready``'s body when it answers 200, else None."""
        try:
            r = httpx.get(f"{self.url}/ready", timeout=2)
        except httpx.HTTPError:
            return None
        return dict(r.json()) if r.status_code == 200 else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no lease release, no goodbye to any socket."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def slurm_calls(self) -> float:
        """Slurm commands this replica ran (``hpcportal_slurm_calls_total``)."""
        text_ = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            float(m.group(1))
            for m in re.finditer(r"^hpcportal_slurm_calls_total\{[^}]*\} (\S+)$", text_, re.M)
        )

    def refreshes(self) -> float:
        text_ = httpx.get(f"{self.url}/metrics", timeout=5).text
        found = re.search(
            r'^hpcportal_snapshot_refreshes_total\{outcome="ok"\} (\S+)$', text_, re.M
        )
        return float(found.group(1)) if found else 0.0


@dataclass
class ReplicaGroup:
    workdir: Path
    slurm_conf: str
    database_url: str
    redis_port: int
    haproxy_port: int = 0
    replicas: list[Replica] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.haproxy_port}"

    def env(self, name: str, extra: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HPCPORTAL_SLURM_CONF": self.slurm_conf,
            "HPCPORTAL_DATABASE_URL": self.database_url,
            "HPCPORTAL_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "HPCPORTAL_JWT_SECRET": SECRET,
            "HPCPORTAL_SECRET_KEY_FILE": str(self.workdir / "secrets" / "portal.key"),
            "HPCPORTAL_REPLICA_ID": name,
            "HPCPORTAL_REFRESH_INTERVAL": "1",
            "HPCPORTAL_REFRESH_SLOW_FRACTION": "10",
            "HPCPORTAL_STALE_AFTER": "10",
            "HPCPORTAL_RATE_LIMIT_JOBS_PER_MINUTE": "0",
            "HPCPORTAL_RATE_LIMIT_JOBS_PER_HOUR": "0",
            "HPCPORTAL_RATE_LIMIT_SESSIONS_PER_MINUTE": "0",
            "HPCPORTAL_RATE_LIMIT_SESSIONS_PER_HOUR": "0",
        }
        if os.environ.get("HPCPORTAL_SLURM_BIN_DIR"):
            env["HPCPORTAL_SLURM_BIN_DIR"] = os.environ["HPCPORTAL_SLURM_BIN_DIR"]
        return {**env, **extra}

    def start_replica(self, name: str, extra: dict[str, str] | None = None) -> Replica:
        port = free_port()
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcportal.cli.main", "serve", "--port", str(port),
             "--log-level", "warning"],
            env=self.env(name, extra or {}), cwd=self.workdir,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        replica = Replica(name, port, proc, log)
        self.replicas.append(replica)
        return replica

    def wait_ready(self, replica: Replica, timeout: float = 60.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not replica.alive():
                raise AssertionError(f"{replica.name} exited:\n{replica.log.read_text()[-3000:]}")
            body = replica.ready()
            if body is not None:
                return body
            time.sleep(0.2)
        raise AssertionError(f"{replica.name} not ready:\n{replica.log.read_text()[-3000:]}")

    def start_haproxy(self) -> None:
        config = ClusterConfig.model_validate(
            {
                "servers": [
                    {"name": r.name, "address": "127.0.0.1", "port": r.port} for r in self.replicas
                ],
                "database": {"engine": "postgresql",
                             "primary": {"name": "db", "address": "127.0.0.1"}},
                "redis": {"mode": "standalone",
                          "server": {"name": "redis", "address": "127.0.0.1"}},
            }
        )  # fmt: skip
        self.haproxy_port = free_port()
        rendered = render_haproxy(config)
        # Loopback only, on a free port; no syslog socket here (logs are not checked).
        rendered = re.sub(r"(?m)^(\s*)bind \S+$", rf"\1bind 127.0.0.1:{self.haproxy_port}",
                          rendered)  # fmt: skip
        rendered = re.sub(r"(?m)^\s*log /dev/log.*$", "", rendered)
        path = self.workdir / "haproxy.cfg"
        path.write_text(rendered)
        check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = (self.workdir / "haproxy.log").open("wb")
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        wait_port(self.haproxy_port)

    def leader(self) -> Replica | None:
        for replica in self.replicas:
            if replica.alive():
                body = replica.ready()
                if body is not None and body.get("role") == "leader":
                    return replica
        return None

    def login(self, username: str) -> str:
        r = httpx.post(
            f"{self.url}/api/v1/auth/token",
            data={"username": username, "password": f"{username}-demo"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A brand-new PostgreSQL database, dropped afterwards."""
    admin = create_engine(make_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"hpcportal_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def replica_group(
    workdir: Path, slurm_conf: str, count: int = 3, extra: dict[str, str] | None = None
) -> Iterator[ReplicaGroup]:
    """``count`` replicas (the first one the leader) behind HAProxy; all killed after."""
    with postgres_database() as database_url:
        redis_port = free_port()
        group = ReplicaGroup(workdir, slurm_conf, database_url, redis_port)
        try:
            argv = [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
            group.procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            wait_port(redis_port)
            # Migrate once: replicas starting together must not race on the schema.
            upgrade(Settings(database_url=database_url, jwt_secret=SECRET))
            for index in range(count):
                replica = group.start_replica(f"r{index + 1}", extra)
                group.wait_ready(replica)
            group.start_haproxy()
            yield group
        finally:
            for proc in reversed(group.procs):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
