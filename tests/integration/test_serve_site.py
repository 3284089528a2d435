"""``hpcportal serve`` as a site runs it: JSON logs (uvicorn's access lines included,
through the same handler), the client address from X-Forwarded-For only when the TCP
peer is a trusted proxy, and a generated signing key kept in the state folder so a
restart keeps everyone logged in. A real uvicorn on loopback; the "proxy" is
127.0.0.1 and the untrusted peer connects from 127.0.0.2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.integration.portal_server import free_port

HEALTH = "/health"


@contextmanager
def serving(env: dict[str, str], log_path: Path, port: int) -> Iterator[str]:
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcportal.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + HEALTH, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_serve_with_json_logs_trusted_proxy_and_a_kept_key(
    devcluster: dict[str, Any], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCPORTAL_")}
    env.update(
        HPCPORTAL_CONFIG="",
        HPCPORTAL_SECRETS_DIR="",
        HPCPORTAL_STATE_DIR=str(state),
        HPCPORTAL_SLURM_CONF=devcluster["slurm_conf"],
        HPCPORTAL_LOG_FORMAT="json",
        HPCPORTAL_TRUSTED_PROXIES='["127.0.0.1"]',
    )
    log_path = tmp_path / "portal.log"
    port = free_port()
    with serving(env, log_path, port) as url:
        httpx.get(url + HEALTH, headers={"X-Forwarded-For": "192.0.2.50"})
        untrusted = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with untrusted:
            untrusted.get(url + HEALTH, headers={"X-Forwarded-For": "192.0.2.51"})
        time.sleep(0.5)
    key_file = state / "secrets" / "jwt_secret"
    first_key = key_file.read_text()
    assert (state / "hpcportal.db").exists()  # the database went to state_dir too

    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    access = [e["message"] for e in entries if e["logger"] == "uvicorn.access"]
    assert any(m.startswith("192.0.2.50:") and HEALTH in m for m in access), access
    assert any(m.startswith("127.0.0.2:") and HEALTH in m for m in access), access
    assert not any("192.0.2.51" in m for m in access)  # the untrusted peer's claim
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)

    with serving(env, log_path, free_port()):
        pass
    assert key_file.read_text() == first_key  # a restart keeps the signing key
