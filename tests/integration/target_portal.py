"""A portal listening at the dev cluster's portal target (``dev-cluster status``:
``monitoring.portal_target``, 127.0.0.1:8080 + 10 x slot), where the cluster's
MailProg and Alertmanager send and Prometheus scrapes, so a test needs to change
none of the cluster's files (another test session's ``dev-cluster up`` would put them
back). Like ``portal_server.run_portal`` but on that port, which must be free."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from hpcportal.app import create_app
from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from tests.integration.portal_server import RunningPortal


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextmanager
def portal_at(settings: Settings, target: str) -> Iterator[RunningPortal]:
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    if not port_free(host, port):
        pytest.fail(f"the cluster's portal target {target} is taken (a demo portal?)")
    upgrade(settings)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="target-portal", daemon=True)
    thread.start()
    url = f"http://{target}"
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
