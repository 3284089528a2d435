"""A portal in its own process for the benchmarks, so the clients they run do not
share its event loop, and the small helpers the benchmarks have in common.

Imported by the scripts beside it (``python bench/<name>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123"


def slurm_env(conf: Path) -> dict[str, str]:
    """An environment for Slurm commands on the dev cluster (times in UTC)."""
    return {"PATH": os.environ["PATH"], "SLURM_CONF": str(conf), "TZ": "UTC"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_portal(
    conf: Path,
    port: int,
    tmp: Path,
    *,
    interval: float | None = None,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``hpcportal serve`` on 127.0.0.1:``port`` with a SQLite database in ``tmp``;
    returns once ``/ready`` answers 200. ``interval`` sets the refresh interval,
    ``log_file`` catches its output (shown if it dies while starting)."""
    env = dict(os.environ)
    env.update(
        {
            "HPCPORTAL_SLURM_CONF": str(conf),
            "HPCPORTAL_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "HPCPORTAL_JWT_SECRET": JWT_SECRET,
        }
    )
    if interval is not None:
        env["HPCPORTAL_REFRESH_INTERVAL"] = str(interval)
    argv = [sys.executable, "-m", "hpcportal.cli.main", "serve", "--port", str(port)]
    argv += ["--log-level", "warning"]
    log = log_file.open("wb") if log_file is not None else None
    proc = subprocess.Popen(
        argv, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT if log else None
    )
    if log is not None:
        log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            tail = log_file.read_text()[-2000:] if log_file is not None else ""
            raise SystemExit(f"the portal exited during start-up {tail}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the portal did not become ready")
