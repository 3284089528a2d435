"""Interactive sessions on the live dev cluster: launch, VNC through the portal's proxy,
ownership, sharing, password rotation, restart, failure, deletion.

The portal runs in-process (as root, so it acts as users through ``runuser``; the
sudo path of the same boundary is covered by ``test_submit``). Every session is a
real Slurm job on ``viz-node001`` running TigerVNC and websockify as alice.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.apps_fixture import write_broken_app
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.rfb_client import AuthenticationFailed, RFBClient, WebSocketTransport
from tests.integration.session_access import portal_context, stored_secrets

pytestmark = pytest.mark.integration

READY_SECONDS = 90


class _Lines(logging.Handler):
    """Every record the access log writes, as text."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    tmp = make_portal.dir()
    site_apps = tmp / "apps"
    write_broken_app(site_apps, "Broken")
    return make_portal(tmp=tmp, log_level="info", app_dirs=[site_apps], session_start_timeout=60.0)


#: uvicorn's access log (HTTP), its error log (it notes each WebSocket there) and ours.
LOGGERS = ("uvicorn.access", "uvicorn.error", "")


@pytest.fixture(scope="module")
def access_log(portal: RunningPortal) -> Iterator[_Lines]:
    """Everything the portal logs from now on (added after uvicorn set up its logging)."""
    del portal
    handler = _Lines()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def _cookies(portal: RunningPortal, user: str) -> dict[str, str]:
    """A browser-style login: the session cookie set by the token endpoint."""
    with portal.client() as c:
        r = c.post("/api/v1/auth/token", data={"username": user, "password": f"{user}-demo"})
        assert r.status_code == 200, r.text
        return dict(r.cookies)


def _launch(portal: RunningPortal, headers: dict[str, str], app_id: str, **options: Any) -> str:
    with portal.client(headers=headers) as c:
        r = c.post("/api/v1/sessions", json={"app_id": app_id, "options": options})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "pending" and body["job_id"]
    return str(body["id"])


def _wait(
    portal: RunningPortal, headers: dict[str, str], sid: str, until: set[str], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with portal.client(headers=headers) as c:
        while True:
            body: dict[str, Any] = c.get(f"/api/v1/sessions/{sid}").json()
            done = body["state"] in until - {"ready"} or ("ready" in until and body["ready"])
            if done or time.monotonic() > deadline:
                return body
            time.sleep(0.5)


def _connection_file(sid: str) -> dict[str, Any]:
    path = Path(f"/home/alice/hpcportal/sessions/{sid}/connection.json")
    return dict(json.loads(path.read_text()))


def _ws_url(portal: RunningPortal, path: str) -> str:
    return portal.url.replace("http://", "ws://") + path


def _vnc(portal: RunningPortal, path: str, headers: dict[str, str]) -> RFBClient:
    transport = WebSocketTransport(_ws_url(portal, path), headers={"Origin": portal.url, **headers})
    return RFBClient(transport)


@pytest.fixture(scope="module")
def desktop(portal: RunningPortal, alice: dict[str, str]) -> Iterator[str]:
    # 1 GB: the viz node (4000 MB) must also fit the relaunched copy beside it.
    sid = _launch(portal, alice, "desktop", resolution="1024x768", memory_gb=1)
    body = _wait(portal, alice, sid, {"ready", "failed", "completed", "cancelled"}, READY_SECONDS)
    assert body["ready"], body
    yield sid
    with portal.client(headers=alice) as c:
        c.delete(f"/api/v1/sessions/{sid}")


def test_desktop_reaches_running_on_the_viz_node(
    portal: RunningPortal, alice: dict[str, str], desktop: str, access_log: _Lines
) -> None:
    del access_log  # listening from the first test on
    with portal.client(headers=alice) as c:
        body = c.get(f"/api/v1/sessions/{desktop}").json()
        listed = c.get("/api/v1/sessions", params={"active": "true"}).json()
    assert body["state"] == "running" and body["node"] == "viz-node001"
    assert body["proxy_url"] == f"/api/v1/sessions/{desktop}/vnc"
    assert 0 < body["seconds_left"] <= 3600
    assert desktop in {s["id"] for s in listed}
    assert "password" not in json.dumps(body).lower()
    # The session's files belong to alice, written as alice.
    folder = Path(f"/home/alice/hpcportal/sessions/{desktop}")
    assert folder.owner() == "alice" and (folder / "job.sh").owner() == "alice"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def _spliced() -> float:
    from hpcportal.services.proxy import VNC_CONNECTIONS

    return float(VNC_CONNECTIONS.labels("spliced")._value.get())


def test_vnc_through_the_proxy_shows_the_desktop_and_takes_keys(
    portal: RunningPortal, desktop: str
) -> None:
    spliced = _spliced()
    cookies = _cookies(portal, "alice")
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    with _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", header) as vnc:
        vnc.handshake(password=None)  # the portal authenticated upstream already
        assert (vnc.width, vnc.height) == (1024, 768)
        vnc.read_full_frame(timeout=20)
        before = bytes(vnc.framebuffer)
        assert vnc.distinct_colours() > 2, "the desktop is blank"
        # Click into the terminal and type: the screen changes.
        vnc.send_pointer(200, 200, 1)
        vnc.send_pointer(200, 200, 0)
        vnc.type_text("echo typed-through-the-portal")
        changed = False
        deadline = time.monotonic() + 15
        while not changed and time.monotonic() < deadline:
            vnc.request_update(incremental=True)
            vnc.read_update(timeout=5)
            changed = bytes(vnc.framebuffer) != before
        assert changed, "typing did not change the screen"
    # Without compression on either hop the portal copies bytes between the two
    # connections after the handshake (bench/vnc_proxy.py measures the difference).
    assert _spliced() == spliced + 1


def test_password_is_rotated_after_a_full_control_connection(
    portal: RunningPortal, desktop: str, alice: dict[str, str]
) -> None:
    first = _connection_file(desktop)
    with _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", alice) as vnc:
        vnc.handshake(password=None)
    time.sleep(1.0)  # rotation runs right after the handshake
    # The password the job wrote no longer opens the desktop, straight at websockify
    # (even past its TLS, with the portal's own certificate)...
    tls = portal_context(portal, desktop)
    direct = WebSocketTransport(f"wss://127.0.0.1:{first['port']}/", tls=tls)
    with RFBClient(direct) as raw, pytest.raises(AuthenticationFailed):
        raw.handshake(password=first["password"])
    # ...while the one the portal holds now does (the database holds it sealed).
    full, view_only = stored_secrets(portal, desktop)
    assert full and view_only and full != first["password"]
    direct = WebSocketTransport(f"wss://127.0.0.1:{first['port']}/", tls=tls)
    with RFBClient(direct) as raw:
        raw.handshake(password=full)
    # ...and the portal still gets in (it knows the new one).
    with _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", alice) as vnc:
        vnc.handshake(password=None)


def test_two_tabs_connecting_at_once_both_get_in(
    portal: RunningPortal, desktop: str, alice: dict[str, str]
) -> None:
    """Each full-control connection rotates the password; one opened at the same
    moment, with the password just spent, is retried with the new one."""
    from concurrent.futures import ThreadPoolExecutor

    def connect() -> tuple[int, int]:
        with _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", alice) as vnc:
            vnc.handshake(password=None)
            return vnc.width, vnc.height

    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(lambda _: connect(), range(4)))
    assert sizes == [(1024, 768)] * 4


def test_others_get_403_for_the_session_and_its_proxy(
    portal: RunningPortal, bob: dict[str, str], desktop: str
) -> None:
    with portal.client(headers=bob) as c:
        assert c.get(f"/api/v1/sessions/{desktop}").status_code == 403
        assert c.delete(f"/api/v1/sessions/{desktop}").status_code == 403
        assert c.get(f"/api/v1/sessions/{desktop}/log").status_code == 403
        assert c.get(f"/node/{desktop}/").status_code in (403, 404)
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "bob-script", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
        token = created.json()
    api_token = {"Authorization": f"Bearer {token['token']}"}
    with portal.client(headers=api_token) as c:
        assert c.get(f"/api/v1/sessions/{desktop}").status_code == 403
    for headers in (bob, api_token):
        with pytest.raises(InvalidStatus) as refused:
            _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", headers)
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/node/127.0.0.1:22/",
        "/node/127.0.0.1/22/",
        "/node/localhost/8080/",
        "/node/%31%32%37%2e%30%2e%30%2e%31%3a%32%32/",
        "/node/viz-node001:22/",
        "/node/0000000000000000/",
        "/node/..%2f..%2fapi%2fv1%2fme",
        "/node/%2e%2e/%2e%2e/etc/passwd",
        "/rnode/127.0.0.1/22/",
    ],
)
def test_proxy_never_takes_a_host_or_port_from_the_url(
    portal: RunningPortal, alice: dict[str, str], path: str
) -> None:
    with portal.client(headers=alice) as c:
        r = c.get(path)
    assert r.status_code in (403, 404), (path, r.status_code, r.text[:200])


def test_desktop_session_is_no_web_target(
    portal: RunningPortal, alice: dict[str, str], desktop: str
) -> None:
    with portal.client(headers=alice) as c:
        r = c.get(f"/node/{desktop}/")
    assert r.status_code == 404 and "no web connection" in r.json()["detail"]


def _open_share(portal: RunningPortal, url: str) -> tuple[str, dict[str, str]]:
    """What the share page's script does with a link: post the fragment's token once,
    keep the cookie. Returns the share id and the cookie for its WebSocket."""
    path, _, token = url.partition("#")
    assert path == "/shares/open" and token
    with portal.client() as c:
        opened = c.post("/shares/open", json={"token": token})
    assert opened.status_code == 200, opened.text
    sid = opened.json()["url"].removeprefix("/shares/")
    cookie = opened.cookies.get("hpcportal_share", path=f"/api/v1/shares/{sid}")
    assert cookie and token not in cookie
    return sid, {"Cookie": f"hpcportal_share={cookie}"}


def test_view_only_share_link_and_its_revocation(
    portal: RunningPortal, alice: dict[str, str], carol: dict[str, str], desktop: str
) -> None:
    with portal.client(headers=alice) as c:
        share = c.post(f"/api/v1/sessions/{desktop}/share").json()
    sid, cookie = _open_share(portal, share["url"])
    with pytest.raises(InvalidStatus) as no_cookie:  # the link was not opened here
        _vnc(portal, f"/api/v1/shares/{sid}/vnc", carol)
    assert no_cookie.value.response.status_code == 404
    viewer = _vnc(portal, f"/api/v1/shares/{sid}/vnc", {**carol, **cookie})
    viewer.handshake(password=None)
    viewer.read_full_frame(timeout=20)
    assert viewer.distinct_colours() > 2
    with portal.client(headers=alice) as c:
        assert c.delete(f"/api/v1/sessions/{desktop}/share").json()["shared"] is False
    # The open viewer is cut off within a few seconds...
    with pytest.raises((ConnectionError, OSError, TimeoutError)):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            viewer.request_update(incremental=True)
            viewer.read_update(timeout=2)
    viewer.close()
    # ...and the link no longer opens anything.
    with pytest.raises(InvalidStatus) as refused:
        _vnc(portal, f"/api/v1/shares/{sid}/vnc", {**carol, **cookie})
    assert refused.value.response.status_code == 404


def test_share_tokens_never_reach_the_access_log(
    access_log: _Lines,
    portal: RunningPortal,
    alice: dict[str, str],
    carol: dict[str, str],
    desktop: str,
) -> None:
    """A link used both ways (the fragment form, and the older /shares/<token> path
    that puts the token in a request line) and watched: no token in uvicorn's logs."""
    with portal.client(headers=alice) as c:
        share = c.post(f"/api/v1/sessions/{desktop}/share").json()
        api_token = c.post(
            "/api/v1/auth/api-tokens", json={"name": "log test", "scopes": ["read"]}
        ).json()["token"]
    token = share["token"]
    try:
        with portal.client() as c:
            old = c.get(f"/shares/{token}", follow_redirects=False)
            assert old.status_code == 303
            c.get("/api/v1/cluster", params={"token": api_token})  # a client's mistake
        sid, cookie = _open_share(portal, share["url"])
        with _vnc(portal, f"/api/v1/shares/{sid}/vnc", {**carol, **cookie}) as viewer:
            viewer.handshake(password=None)
            viewer.read_full_frame(timeout=20)
        time.sleep(1.0)
    finally:
        with portal.client(headers=alice) as c:
            c.delete(f"/api/v1/sessions/{desktop}/share")
    text = "\n".join(access_log.lines)
    assert token not in text and api_token not in text
    assert '"GET /shares/[redacted] HTTP/1.1" 303' in text  # logged, without the token
    assert "/api/v1/cluster?token=[redacted]" in text
    assert '"POST /shares/open HTTP/1.1" 200' in text
    assert f"/api/v1/shares/{sid}/vnc" in text  # the socket, named by the share id


def test_password_never_reaches_the_access_log(
    access_log: _Lines, desktop: str, portal: RunningPortal, alice: dict[str, str]
) -> None:
    with _vnc(portal, f"/api/v1/sessions/{desktop}/vnc", alice) as vnc:
        vnc.handshake(password=None)
    time.sleep(1.0)
    full, view_only = stored_secrets(portal, desktop)
    assert full and view_only
    secrets = {full, view_only, _connection_file(desktop)["password"]}
    text = "\n".join(access_log.lines)
    assert f"/api/v1/sessions/{desktop}/vnc" in text  # the log does record the sockets
    for secret in secrets:
        assert secret not in text


def test_session_survives_a_portal_restart(
    portal: RunningPortal, alice: dict[str, str], desktop: str, make_portal: PortalFactory
) -> None:
    settings = portal.settings
    with make_portal.run(settings) as second:
        h = second.login("alice")
        with second.client(headers=h) as c:
            body = c.get(f"/api/v1/sessions/{desktop}").json()
        assert body["state"] == "running" and body["ready"]
        with _vnc(second, f"/api/v1/sessions/{desktop}/vnc", h) as vnc:
            vnc.handshake(password=None)
            vnc.read_full_frame(timeout=20)
            assert vnc.distinct_colours() > 2


def test_bad_launches_are_clear_errors(portal: RunningPortal, alice: dict[str, str]) -> None:
    with portal.client(headers=alice) as c:
        unknown = c.post("/api/v1/sessions", json={"app_id": "nope"})
        too_long = c.post("/api/v1/sessions", json={"app_id": "desktop", "options": {"hours": 99}})
        bad_size = c.post(
            "/api/v1/sessions", json={"app_id": "desktop", "options": {"resolution": "1x1;id"}}
        )
        before = c.get("/api/v1/sessions").json()
    assert unknown.status_code == 404
    assert too_long.status_code == 422 and "from 1 to 8" in too_long.json()["detail"]
    assert bad_size.status_code == 422
    assert all(s["app_id"] != "nope" for s in before)


def test_a_failing_app_reports_its_log(portal: RunningPortal, alice: dict[str, str]) -> None:
    sid = _launch(portal, alice, "broken")
    body = _wait(portal, alice, sid, {"failed", "completed", "cancelled"}, 60)
    assert body["state"] == "failed", body
    assert "cannot find its licence" in body["error"]


def _session_processes(sid: str) -> list[str]:
    """alice's processes whose command line names the session folder (Xvnc's -rfbauth)."""
    found = subprocess.run(
        ["pgrep", "-a", "-u", "alice", "-f", f"/hpcportal/sessions/{sid}/"],
        capture_output=True,
        text=True,
    )
    return [line for line in found.stdout.splitlines() if line.strip()]


def test_extend_says_slurms_rule_once(
    portal: RunningPortal, alice: dict[str, str], desktop: str
) -> None:
    """Slurm lets only operators raise a running job's time limit: alice hears that
    rule in one sentence, with no "Slurm said: Slurm refused:" doubled."""
    from hpcportal.services.sessions import RUNNING_LIMIT_REFUSED

    with portal.client(headers=alice) as c:
        r = c.post(f"/api/v1/sessions/{desktop}/extend", json={"hours": 1})
        bad = c.post(f"/api/v1/sessions/{desktop}/extend", json={"hours": 0})
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == RUNNING_LIMIT_REFUSED
    assert bad.status_code == 422


def test_launch_over_the_api_writes_no_secret_into_slurm(
    portal: RunningPortal, desktop: str, slurm_env: dict[str, str], alice: dict[str, str]
) -> None:
    with portal.client(headers=alice) as c:
        job_id = c.get(f"/api/v1/sessions/{desktop}").json()["job_id"]
    shown = subprocess.run(
        ["scontrol", "show", "job", str(job_id)], env=slurm_env, capture_output=True, text=True
    ).stdout
    password = _connection_file(desktop)["view_password"]
    assert password not in shown


def test_relaunch_starts_the_same_app_with_the_same_settings(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], desktop: str
) -> None:
    """Also: the owner's other tabs hear of the new session and of its deletion at once
    on the live socket's ``sessions`` channel; nobody else does."""
    from websockets.sync.client import connect

    url = _ws_url(portal, "/api/v1/ws")
    with (
        connect(url, additional_headers={**alice, "Origin": portal.url}) as tab,
        connect(url, additional_headers={**bob, "Origin": portal.url}) as other,
    ):
        for socket in (tab, other):
            socket.send(json.dumps({"type": "subscribe", "channels": ["sessions"]}))
            socket.send(json.dumps({"type": "ping"}))  # answered after the subscription
        for socket in (tab, other):
            while json.loads(socket.recv(timeout=10)).get("type") != "pong":
                pass
        with portal.client(headers=alice) as c:
            r = c.post(f"/api/v1/sessions/{desktop}/relaunch")
            assert r.status_code == 201, r.text
            again = r.json()
            assert again["id"] != desktop and again["job_id"]
            assert again["app_id"] == "desktop" and again["options"]["resolution"] == "1024x768"
            assert c.delete(f"/api/v1/sessions/{again['id']}").json()["state"] == "cancelled"
        heard: list[str] = []
        deadline = time.monotonic() + 10
        while "cancelled" not in heard and time.monotonic() < deadline:
            message = json.loads(tab.recv(timeout=10))
            if message.get("type") == "session" and message["session"]["id"] == again["id"]:
                heard.append(message["session"]["state"])
        assert heard[0] == "pending" and heard[-1] == "cancelled", heard
        with pytest.raises(TimeoutError):
            while True:  # bob hears nothing of alice's sessions
                message = json.loads(other.recv(timeout=1))
                assert message.get("type") != "session", message


def test_delete_cancels_the_job_and_the_vnc_processes_end(
    portal: RunningPortal, alice: dict[str, str], desktop: str, slurm_env: dict[str, str]
) -> None:
    """Last in this module: it ends the shared desktop session."""
    running = _session_processes(desktop)
    assert any("Xvnc" in line for line in running), running
    with portal.client(headers=alice) as c:
        job_id = c.get(f"/api/v1/sessions/{desktop}").json()["job_id"]
        gone = c.delete(f"/api/v1/sessions/{desktop}").json()
    assert gone["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while _session_processes(desktop) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _session_processes(desktop), "processes outlived the cancelled session"
    queue = subprocess.run(
        ["squeue", "-h", "-j", str(job_id), "-o", "%T"],
        env=slurm_env,
        capture_output=True,
        text=True,
    )
    assert queue.stdout.strip() in ("", "CANCELLED", "COMPLETING")
    with portal.client(headers=alice) as c:
        assert c.get(f"/node/{desktop}/").status_code in (404, 409)


def test_session_actions_are_in_the_audit_log(
    portal: RunningPortal, carol: dict[str, str], desktop: str
) -> None:
    """After the module's launches, shares, extend and delete: each is audited with its
    outcome (the refused extend as refused), readable by an admin."""
    with portal.client(headers=carol) as c:
        r = c.get("/api/v1/audit", params={"user": "alice", "action": "session.", "limit": 200})
    assert r.status_code == 200, r.text
    seen = {(i["action"], i["result"]) for i in r.json()["items"]}
    for action in ("session.launch", "session.share", "session.unshare", "session.delete"):
        assert (action, "ok") in seen, (action, seen)
    assert any(a == "session.extend" and result != "ok" for a, result in seen), seen
    targets = {i["target"] for i in r.json()["items"] if i["action"] == "session.delete"}
    assert f"session:{desktop}" in targets
