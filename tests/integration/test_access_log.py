"""What ``hpcportal serve`` itself prints: uvicorn's access log, through the portal's
redacting filter, as an operator's journal or log file would keep it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.portal_server import free_port


def test_serve_logs_requests_without_their_secrets(
    devcluster: dict[str, Any], tmp_path: Path
) -> None:
    share_token = secrets.token_urlsafe(32)
    api_token = "hpcp_" + secrets.token_urlsafe(30)
    jupyter_token = secrets.token_hex(24)
    port = free_port()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HPCPORTAL_DATABASE_URL": f"sqlite:///{state / 'portal.db'}",
        "HPCPORTAL_SLURM_CONF": devcluster["slurm_conf"],
        "HPCPORTAL_JWT_SECRET": secrets.token_urlsafe(48),
    }
    log_path = tmp_path / "portal.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcportal.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                time.sleep(0.2)
            with httpx.Client(base_url=url) as client:
                assert client.get(f"/shares/{share_token}").status_code == 303  # a login
                client.get("/login", params={"next": f"/shares/{share_token}"})
                client.get("/api/v1/cluster", params={"token": api_token})
                client.get(f"/node/0123456789abcdef/lab?token={jupyter_token}")
                client.get("/api/v1/cluster", headers={"Authorization": f"Bearer {api_token}"})
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    text = log_path.read_text()
    for secret in (share_token, api_token, jupyter_token):
        assert secret not in text
    assert '"GET /shares/[redacted] HTTP/1.1"' in text
    assert "next=%2Fshares%2F[redacted]" in text
    assert "/api/v1/cluster?token=[redacted]" in text
    assert "/node/0123456789abcdef/lab?token=[redacted]" in text
