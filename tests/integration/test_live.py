"""Live updates over the WebSocket and job notifications, against the live dev cluster.

alice's socket (cookie login) follows her job from PENDING to COMPLETED, gets its
``started`` and ``completed`` notifications once each and its output; bob's socket
(bearer token) sees the job's public fields only, and none of alice's notifications
or output. Also: foreign origins refused, logout closing the socket, and the REST
notification endpoints.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    running = make_portal(refresh_interval=1.0)
    # These tests follow both events of a job: alice switches "started" on (it is
    # off by default, services/notification_settings.py).
    with running.client() as c:
        switched = c.put(
            "/api/v1/notifications/settings",
            headers=running.login("alice"),
            json={"started": True},
        )
    assert switched.status_code == 200 and switched.json()["started"], switched.text
    return running


@dataclass
class Login:
    token: str
    cookies: dict[str, str]

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def cookie_header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}


def log_in(portal: RunningPortal, user: str, password: str) -> Login:
    with portal.client() as c:
        r = c.post("/api/v1/auth/token", data={"username": user, "password": password})
        assert r.status_code == 200, r.text
        return Login(r.json()["access_token"], dict(r.cookies))


@dataclass
class LiveClient:
    """A socket whose messages a thread keeps reading (so the portal never sees a slow
    client), stored with their arrival time."""

    ws: ClientConnection
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    close_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                self.messages.append((time.monotonic(), json.loads(text)))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.done.set()

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in list(self.messages) if m["type"] == kind]

    def wait_for(
        self, check: Callable[[LiveClient], bool], what: str, timeout: float = TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {self.messages[-5:]}")

    def close(self) -> None:
        self.ws.close()
        self.done.wait(10)


def ws_url(portal: RunningPortal) -> str:
    return portal.url.replace("http://", "ws://") + "/api/v1/ws"


def open_socket(portal: RunningPortal, headers: dict[str, str], **kwargs: Any) -> LiveClient:
    # legacy=True: a connection used directly rather than as a context manager.
    ws = connect(
        ws_url(portal),
        additional_headers=headers,
        proxy=None,  # loopback only, whatever the environment's proxy settings
        max_size=None,
        legacy=True,
        **kwargs,
    )
    client = LiveClient(ws)
    client.wait_for(lambda c: bool(c.of_type("hello")), "hello", timeout=10)
    return client


def job_states(client: LiveClient, job_id: str) -> list[str]:
    """The job's successive states as the socket received them (repeats collapsed)."""
    states: list[str] = []
    for message in client.of_type("jobs"):
        for job in message["changed"]:
            if job["id"] == job_id and (not states or states[-1] != job["state"]):
                states.append(job["state"])
    return states


def job_entries(client: LiveClient, job_id: str) -> list[dict[str, Any]]:
    return [j for m in client.of_type("jobs") for j in m["changed"] if j["id"] == job_id]


def test_a_job_lifecycle_as_owner_and_as_someone_else(
    portal: RunningPortal, conf: str, devcluster: dict[str, Any]
) -> None:
    alice_login = log_in(portal, "alice", "alice-demo")
    bob_login = log_in(portal, "bob", "bob-demo")
    alice = open_socket(portal, {**alice_login.cookie_header, "Origin": portal.url})
    bob = open_socket(portal, bob_login.bearer)
    assert alice.of_type("hello")[0]["user"] == "alice"
    assert bob.of_type("hello")[0]["user"] == "bob"
    for client in (alice, bob):
        client.send({"type": "subscribe", "channels": ["jobs", "notifications", "cluster"]})
        client.wait_for(lambda c: bool(c.of_type("cluster")), "the current cluster summary")

    job = slurm_cli.sbatch(
        conf, "alice", "--hold", "-J", "live-test", "--wrap", "echo first; sleep 6; echo last"
    )
    job_id = str(job)
    finished = False
    try:
        alice.send({"type": "subscribe", "channels": [f"job_output:{job_id}"]})
        bob.send({"type": "subscribe", "channels": [f"job_output:{job_id}"]})
        alice.wait_for(lambda c: "PENDING" in job_states(c, job_id), "the job, pending")
        slurm_cli.run(conf, ["scontrol", "release", job_id])
        alice.wait_for(lambda c: "COMPLETED" in job_states(c, job_id), "the job, completed")
        alice.wait_for(
            lambda c: (
                {n["notification"]["event"] for n in c.of_type("notification")}
                >= {"started", "completed"}
            ),
            "both notifications",
        )
        alice.wait_for(
            lambda c: "last" in "".join(m["data"] for m in c.of_type("job_output")),
            "the end of the output",
        )
        bob.wait_for(lambda c: "COMPLETED" in job_states(c, job_id), "the job, for bob")
        portal.wait_for_generation(portal.services.snapshot.health().generation + 2)
        time.sleep(0.5)
        finished = True
    finally:
        # Only a failed wait leaves the job to cancel: a finished job may still be
        # completing (EpilogSlurmctld runs), and a cancel then adds slurmstepd's
        # "CANCELLED" line to the output this test compares.
        if not finished:
            slurm_cli.scancel(conf, job, missing_ok=True)

    # alice saw it go pending -> running -> completed, with its private part.
    states = job_states(alice, job_id)
    assert states.index("PENDING") < states.index("RUNNING") < states.index("COMPLETED")
    assert all(j["private"] is not None for j in job_entries(alice, job_id))
    # Slurm's own answer: squeue --json's standard_output is the -o pattern as written
    # on 22.05 and 26.05 (which adds stdout_expanded), the filled-in path on 24.11.
    pattern = "/home/alice/slurm-%j.out"
    stdout = pattern.replace("%j", job_id) if devcluster["release"] == "24.11" else pattern
    assert job_entries(alice, job_id)[0]["private"]["stdout"] == stdout
    # Each notification once, with the unread count.
    mine = [n for n in alice.of_type("notification") if n["notification"]["job_id"] == job_id]
    assert sorted(n["notification"]["event"] for n in mine) == ["completed", "started"]
    assert all(n["unread"] >= 1 for n in mine)
    assert mine[0]["notification"]["params"]["job_name"] == "live-test"
    # The output, read as alice, in order.
    output = alice.of_type("job_output")
    assert all(m["job_id"] == job_id and m["stream"] == "stdout" for m in output)
    assert "".join(m["data"] for m in output) == "first\nlast\n"
    assert output[0]["offset"] == 0

    # bob saw the same states, never the private part, and nothing of alice's own.
    assert job_states(bob, job_id) == states
    assert all(j["private"] is None for j in job_entries(bob, job_id))
    assert not [n for n in bob.of_type("notification") if n["notification"]["job_id"] == job_id]
    assert bob.of_type("job_output") == []
    assert any("owner" in e["message"] for e in bob.of_type("error"))
    for client in (alice, bob):
        client.close()


def test_a_foreign_origin_is_refused_while_the_same_origin_works(portal: RunningPortal) -> None:
    login = log_in(portal, "alice", "alice-demo")
    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(portal),
            additional_headers={**login.cookie_header, "Origin": "http://evil.example.com"},
            proxy=None,
        )
    assert refused.value.response.status_code == 403
    client = open_socket(portal, {**login.cookie_header, "Origin": portal.url})
    client.send({"type": "ping"})
    client.wait_for(lambda c: bool(c.of_type("pong")), "pong")
    client.close()


def test_no_credentials_no_socket(portal: RunningPortal) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(portal), proxy=None)
    assert refused.value.response.status_code == 401


def test_logout_closes_the_sessions_sockets(portal: RunningPortal) -> None:
    login = log_in(portal, "alice", "alice-demo")
    other = log_in(portal, "alice", "alice-demo")
    first = open_socket(portal, login.cookie_header)
    second = open_socket(portal, login.bearer)
    unrelated = open_socket(portal, other.cookie_header)
    with portal.client() as c:
        csrf = login.cookies["hpcportal_csrf"]
        r = c.post(
            "/api/v1/auth/logout",
            headers={**login.cookie_header, "X-CSRF-Token": csrf},
        )
    assert r.status_code == 204, r.text
    for client in (first, second):
        assert client.done.wait(5), "the socket was not closed"
        assert client.close_code == 4401
    assert not unrelated.done.is_set()
    unrelated.close()
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(portal), additional_headers=login.cookie_header, proxy=None)
    assert refused.value.response.status_code == 401


def test_notification_endpoints(portal: RunningPortal, conf: str) -> None:
    alice, bob = log_in(portal, "alice", "alice-demo"), log_in(portal, "bob", "bob-demo")
    job = slurm_cli.sbatch(conf, "alice", "-J", "live-rest", "--wrap", "true")
    deadline = time.monotonic() + TIMEOUT

    def alices(**params: Any) -> dict[str, Any]:
        with portal.client() as c:
            r = c.get("/api/v1/notifications", headers=alice.bearer, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def for_job() -> list[dict[str, Any]]:
        return [n for n in alices(limit=200)["items"] if n["job_id"] == str(job)]

    while time.monotonic() < deadline and {n["event"] for n in for_job()} != {
        "started",
        "completed",
    }:
        time.sleep(0.2)
    notes = for_job()
    assert sorted(n["event"] for n in notes) == ["completed", "started"]
    with portal.client() as c:
        count = c.get("/api/v1/notifications/unread-count", headers=alice.bearer).json()
        assert count["unread"] >= 2
        target = notes[0]["id"]
        # bob can neither read nor delete alice's.
        assert c.post(f"/api/v1/notifications/{target}/read", headers=bob.bearer).status_code == 404
        assert c.delete(f"/api/v1/notifications/{target}", headers=bob.bearer).status_code == 404
        assert all(n["job_id"] != str(job) for n in c.get(
            "/api/v1/notifications", headers=bob.bearer, params={"limit": 200}
        ).json()["items"])  # fmt: skip
        read = c.post(f"/api/v1/notifications/{target}/read", headers=alice.bearer)
        assert read.status_code == 200 and read.json()["read_at"] is not None
        after = c.get("/api/v1/notifications/unread-count", headers=alice.bearer).json()
        assert after["unread"] == count["unread"] - 1
        unread_ids = {n["id"] for n in alices(unread="true", limit=200)["items"]}
        assert target not in unread_ids
        all_read = c.post("/api/v1/notifications/read-all", headers=alice.bearer).json()
        assert all_read == {"updated": count["unread"] - 1, "unread": 0}
        assert c.delete(f"/api/v1/notifications/{target}", headers=alice.bearer).status_code == 204
        assert c.delete(f"/api/v1/notifications/{target}", headers=alice.bearer).status_code == 404
        # Unknown parameters and bad values are refused, as everywhere.
        assert c.get("/api/v1/notifications?unred=1", headers=alice.bearer).status_code == 422
        assert c.get("/api/v1/notifications?limit=0", headers=alice.bearer).status_code == 422
    assert target not in {n["id"] for n in for_job()}


def test_rest_without_login_is_401(portal: RunningPortal) -> None:
    assert httpx.get(f"{portal.url}/api/v1/notifications").status_code == 401
