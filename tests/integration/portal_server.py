"""Run a real portal (uvicorn on loopback) in a background thread for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from hpcportal.app import create_app
from hpcportal.composition import AppServices, services_of
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade

TEST_SECRET = "integration-tests-signing-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def portal_settings(tmp: Path, slurm_conf: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp / 'portal.db'}",
        "slurm_conf": Path(slurm_conf),
        "jwt_secret": TEST_SECRET,
        "refresh_interval": 1.0,
        # A refresh counts as slow (and the refresher backs off) only past 10 intervals:
        # on a busy test machine 1 s intervals are tight, and tests wait for fresh data.
        # tests/integration/test_slurm_slow.py turns the guard back to its default.
        "refresh_slow_fraction": 10.0,
        "stale_after": 5.0,
        "slurm_timeout": 10.0,
        # No per-user rate limits: tests submit and launch faster than people do.
        # tests/integration/test_rate_limits.py turns them on.
        "rate_limit_jobs_per_minute": 0,
        "rate_limit_jobs_per_hour": 0,
        "rate_limit_sessions_per_minute": 0,
        "rate_limit_sessions_per_hour": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class RunningPortal:
    url: str
    app: FastAPI
    settings: Settings

    @property
    def services(self) -> AppServices:
        """The running app's parts (snapshot, database, executor, ...)."""
        return services_of(self.app)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def login(self, username: str, password: str | None = None) -> dict[str, str]:
        """Log in through the API (real PAM) and return bearer headers."""
        password = password or f"{username}-demo"
        with self.client() as c:
            r = c.post("/api/v1/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def wait_for_generation(self, after: int, timeout: float = 30.0) -> int:
        """Block until the snapshot refresher has published a snapshot newer than ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            generation = self.services.snapshot.health().generation
            if generation > after:
                return int(generation)
            time.sleep(0.05)
        raise AssertionError(f"no snapshot newer than generation {after} within {timeout} s")


@contextmanager
def run_portal(settings: Settings, *, log_level: str = "warning") -> Iterator[RunningPortal]:
    """Migrate, start uvicorn on 127.0.0.1 in a thread, wait until it answers, stop after.

    ``log_level="info"`` turns on uvicorn's access log (tests that read what it logs).
    """
    upgrade(settings)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="portal", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise AssertionError("the portal did not start")
    try:
        yield RunningPortal(url=url, app=app, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
