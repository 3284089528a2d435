"""A web app session (JupyterLab) on the live dev cluster, through ``/node/{session}/``.

alice launches ``jupyter``; the Lab page loads through the portal's proxy with
nothing but her portal login; a kernel started through the proxy executes ``1+1``
over the proxied WebSocket. No URL carries the app's token, the portal's session
cookie never reaches the app, and nobody else gets through.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.portal_server import RunningPortal

pytestmark = pytest.mark.integration

READY_SECONDS = 150


@contextmanager
def _browser(portal: RunningPortal, user: str) -> Iterator[httpx.Client]:
    """A client that logs in like the browser (cookies) and sends the portal's Origin."""
    with portal.client(headers={"Origin": portal.url}) as client:
        r = client.post("/api/v1/auth/token", data={"username": user, "password": f"{user}-demo"})
        assert r.status_code == 200, r.text
        yield client


@pytest.fixture(scope="module")
def jupyter(portal: RunningPortal, alice: dict[str, str]) -> Iterator[str]:
    with portal.client(headers=alice) as c:
        r = c.post("/api/v1/sessions", json={"app_id": "jupyter", "options": {"memory_gb": 1}})
        assert r.status_code == 201, r.text
        sid = str(r.json()["id"])
        deadline = time.monotonic() + READY_SECONDS
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = c.get(f"/api/v1/sessions/{sid}").json()
            if body["ready"] or body["state"] in ("failed", "completed", "cancelled"):
                break
            time.sleep(1)
        assert body.get("ready"), body
        assert body["proxy_url"] == f"/node/{sid}/"
    yield sid
    with portal.client(headers=alice) as c:
        c.delete(f"/api/v1/sessions/{sid}")


def test_lab_page_loads_through_the_proxy(portal: RunningPortal, jupyter: str) -> None:
    with _browser(portal, "alice") as c:
        lab = c.get(f"/node/{jupyter}/lab")
        status = c.get(f"/node/{jupyter}/api/status")
        bare = c.get(f"/node/{jupyter}", follow_redirects=False)
    assert lab.status_code == 200, lab.text[:300]
    assert "JupyterLab" in lab.text and f"/node/{jupyter}/" in lab.text
    assert status.status_code == 200 and "started" in status.json()
    assert bare.status_code == 308 and bare.headers["location"] == f"/node/{jupyter}/"
    # Only the session's id is in the URLs the portal hands out; the token is added by
    # the proxy (JupyterLab itself then echoes it into its page for its own owner).
    token = json.loads(
        Path(f"/home/alice/hpcportal/sessions/{jupyter}/connection.json").read_text()
    )["token"]
    assert token not in str(lab.url) and token not in bare.headers["location"]


def test_a_kernel_executes_one_plus_one(portal: RunningPortal, jupyter: str) -> None:
    with _browser(portal, "alice") as c:
        created = c.post(f"/node/{jupyter}/api/kernels", json={"name": "python3"})
        assert created.status_code == 201, created.text
        kernel = created.json()["id"]
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    url = portal.url.replace("http://", "ws://") + f"/node/{jupyter}/api/kernels/{kernel}/channels"
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "username": "alice",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": "1+1", "silent": False, "store_history": False},
        "channel": "shell",
    }
    result = None
    with connect(url, additional_headers={"Cookie": cookie, "Origin": portal.url}) as ws:
        ws.send(json.dumps(request))
        deadline = time.monotonic() + 60
        while result is None and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            same = message.get("parent_header", {}).get("msg_id") == msg_id
            if same and message.get("msg_type") == "execute_result":
                result = message["content"]["data"]["text/plain"]
    assert result == "2"


def test_portal_cookie_never_reaches_the_app_and_others_are_refused(
    portal: RunningPortal, jupyter: str, bob: dict[str, str]
) -> None:
    # Jupyter echoes nothing of cookies, so ask the proxy's own header filter directly.
    from hpcportal.api.node_proxy import upstream_headers
    from hpcportal.services.sessions import Target

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    target = Target(jupyter, "alice", "127.0.0.1", 1, "t0ken", False, "web", "/", "", tls)
    sent = upstream_headers(
        [("cookie", "hpcportal_session=abc; _xsrf=keep; hpcportal_csrf=x"), ("origin", "o")],
        target,
        portal.settings,
    )
    assert sent["Cookie"] == "_xsrf=keep"
    assert sent["Authorization"] == "token t0ken"
    assert sent["Origin"] == "https://127.0.0.1:1"
    with _browser(portal, "bob") as c:
        assert c.get(f"/node/{jupyter}/lab").status_code == 403
        assert c.post(f"/node/{jupyter}/api/kernels", json={}).status_code == 403
    with portal.client(headers=bob) as c:
        assert c.get(f"/node/{jupyter}/api/status").status_code == 403
    url = portal.url.replace("http://", "ws://") + f"/node/{jupyter}/api/events/subscribe"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={**bob, "Origin": portal.url})
    assert refused.value.response.status_code == 403


def test_unsafe_requests_from_another_site_are_refused(portal: RunningPortal, jupyter: str) -> None:
    with _browser(portal, "alice") as c:
        forged = c.post(
            f"/node/{jupyter}/api/kernels",
            json={"name": "python3"},
            headers={"Origin": "https://evil.example"},
        )
        kernels = c.get(f"/node/{jupyter}/api/kernels").json()
    assert forged.status_code == 403
    assert "portal's own pages" in forged.json()["detail"]
    assert isinstance(kernels, list)
