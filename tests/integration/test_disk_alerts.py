"""Disk alerts end to end: a real portal (in-process, as root, so the run-as helper
runs through ``runuser`` as alice and bob), real statvfs numbers of alice's home, real
PAM logins, the live WebSocket, and node scratch from a Prometheus STAND-IN on
127.0.0.1 (Prometheus is not installed; see ``tests/prometheus_standin.py``).

The dev cluster has no quotas, so alice's own alert comes from the usage of the disk
holding her home (``disk_user_alerts = "quota_or_area"``), with thresholds set just
below and above it; quota numbers are covered by ``tests/unit/test_disk_alerts.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcportal.services.disk_alerts import DiskWatcher
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_live import LiveClient, log_in, open_socket
from tests.prometheus_standin import PrometheusStandIn, node_fs_series, prometheus_standin

API = "/api/v1"
NORMAL = {"warning_percent": 75, "critical_percent": 90}


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusStandIn]:
    # node001's scratch is 95 % full: critical from the first check on.
    with prometheus_standin(series=node_fs_series("node001:9100", 1000, 50, 50)) as prom:
        yield prom


@pytest.fixture(scope="module")
def portal(prometheus: PrometheusStandIn, make_portal: PortalFactory) -> RunningPortal:
    return make_portal(
        disk_alert_paths=["/tmp"],
        disk_user_alerts="quota_or_area",
        disk_user_alert_users=["alice", "bob"],
        disk_scratch_nodes=["node001"],
        prometheus_url=prometheus.url,
        prometheus_timeout=5.0,
        disk_alert_interval=3600.0,
    )


def statvfs_percent(path: str) -> float:
    vfs = os.statvfs(path)
    used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
    return 100.0 * used / (used + vfs.f_bavail * vfs.f_frsize)


def disk_notes(c: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = c.get(f"{API}/notifications", headers=headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    return [n for n in r.json()["items"] if n["kind"] == "disk"]


def pushed(client: LiveClient) -> list[tuple[str, str]]:
    return [
        (m["notification"]["target"], m["notification"]["event"])
        for m in client.of_type("notification")
        if m["notification"]["kind"] == "disk"
    ]


def put(c: httpx.Client, carol: dict[str, str], targets: dict[str, Any]) -> None:
    r = c.put(f"{API}/alerts/disk/thresholds", headers=carol,
              json={"default": NORMAL, "targets": targets})  # fmt: skip
    assert r.status_code == 200, r.text


def test_admins_and_the_user_are_told_once_each_and_live(
    portal: RunningPortal, prometheus: PrometheusStandIn
) -> None:
    alice, bob, carol = (log_in(portal, u, f"{u}-demo") for u in ("alice", "bob", "carol"))
    with portal.client() as c:
        # The check made at start-up read alice's home as alice.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = c.get(f"{API}/alerts/disk", headers=alice.bearer).json()["yours"]
            if mine:
                break
            time.sleep(0.2)
        [home] = mine
        assert home["target"] == "user:alice:home" and home["kind"] == "area"
        assert home["level"] == "info" and home["percent"] is not None
        real = statvfs_percent(str(Path("~alice").expanduser()))
        assert abs(home["percent"] - real) < 1.0, (home, real)
        # Nobody else sees alice's target; admins see shared storage and scratch.
        assert c.get(f"{API}/alerts/disk", headers=bob.bearer).json()["yours"][0]["target"] == (
            "user:bob:home"
        )
        report = c.get(f"{API}/alerts/disk", headers=carol.bearer).json()
        assert {t["target"] for t in report["targets"]} == {"path:/tmp", "node:node001"}
        assert [(a["target"], a["level"]) for a in report["alerts"]] == [
            ("node:node001", "critical")
        ]
        assert len(prometheus.queries) >= 1

    sockets = {name: open_socket(portal, who.cookie_header | {"Origin": portal.url})
               for name, who in (("alice", alice), ("bob", bob), ("carol", carol))}  # fmt: skip
    for s in sockets.values():
        s.send({"type": "subscribe", "channels": ["notifications"]})
        s.send({"type": "ping"})  # answered in order: after the pong the subscription holds
    for s in sockets.values():
        s.wait_for(lambda c: bool(c.of_type("pong")), "the answer to a ping")
    percent = home["percent"]
    try:
        with portal.client() as c:
            # Warning for alice's home only (everything else keeps 75 / 90 %).
            warning_only = {"warning_percent": percent / 4, "critical_percent": 99.99}
            put(c, carol.bearer, {"user:alice:home": warning_only})
            sockets["alice"].wait_for(lambda s: len(pushed(s)) == 1, "alice's warning")
            assert pushed(sockets["alice"]) == [("user:alice:home", "disk_warning")]
            # Checks while it stays a warning: nothing is told again.
            for _ in range(2):
                assert c.post(f"{API}/alerts/disk/check", headers=carol.bearer).status_code == 200
            # Escalation: critical, same episode.
            critical = {"warning_percent": percent / 4, "critical_percent": percent / 2}
            put(c, carol.bearer, {"user:alice:home": critical})
            sockets["alice"].wait_for(lambda s: len(pushed(s)) == 2, "alice's critical")
            assert c.post(f"{API}/alerts/disk/check", headers=carol.bearer).status_code == 200
            # Back to the defaults: alice's usage is below 75 % again.
            put(c, carol.bearer, {})
            sockets["alice"].wait_for(lambda s: len(pushed(s)) == 3, "alice's all clear")
            # node001's scratch empties: carol hears that it is over.
            prometheus.series = node_fs_series("node001:9100", 1000, 900, 900)
            assert c.post(f"{API}/alerts/disk/check", headers=carol.bearer).status_code == 200
            sockets["carol"].wait_for(lambda s: len(pushed(s)) == 1, "node001 all clear")
            time.sleep(1.0)  # anything else would arrive by now

            assert pushed(sockets["alice"]) == [
                ("user:alice:home", "disk_warning"),
                ("user:alice:home", "disk_critical"),
                ("user:alice:home", "disk_cleared"),
            ]
            assert pushed(sockets["carol"]) == [("node:node001", "disk_cleared")]
            assert pushed(sockets["bob"]) == []

            stored = disk_notes(c, alice.bearer)
            assert [n["event"] for n in stored] == ["disk_cleared", "disk_critical",
                                                    "disk_warning"]  # fmt: skip
            cleared = stored[0]
            assert cleared["job_id"] is None and cleared["params"]["level"] == "info"
            assert cleared["title"] == "Disk usage back below threshold"
            assert "back below the threshold" in cleared["body"]
            assert stored[1]["params"]["area"] == "area" and stored[1]["params"]["name"] == "home"
            # carol: node001's critical (told at start-up, before her socket) and its
            # end, once each; nothing of alice's.
            carols = [(n["target"], n["event"]) for n in disk_notes(c, carol.bearer)]
            assert carols == [("node:node001", "disk_cleared"), ("node:node001", "disk_critical")]
            assert disk_notes(c, bob.bearer) == []
            # alice's notification is hers alone, like job notifications.
            own = cleared["id"]
            assert c.post(f"{API}/notifications/{own}/read", headers=bob.bearer).status_code == 404
            read = c.post(f"{API}/notifications/{own}/read", headers=alice.bearer)
            assert read.status_code == 200 and read.json()["read_at"]
    finally:
        for s in sockets.values():
            s.close()


def test_prometheus_failing_makes_scratch_unknown_not_a_crash(
    portal: RunningPortal, prometheus: PrometheusStandIn
) -> None:
    carol = log_in(portal, "carol", "carol-demo")
    prometheus.error, prometheus.status = "query processing would load too many samples", 422
    try:
        with portal.client() as c:
            r = c.post(f"{API}/alerts/disk/check", headers=carol.bearer)
            assert r.status_code == 200, r.text
            node = next(t for t in r.json()["targets"] if t["target"] == "node:node001")
            assert node["level"] == "unknown"
            assert "too many samples" in node["error"]
            assert node["percent"] is not None  # the last usage seen is kept
    finally:
        prometheus.error, prometheus.status = None, 200


def test_without_quota_users_are_not_read_at_every_check(portal: RunningPortal) -> None:
    """``disk_user_alerts = "quota"`` on a host without the ``quota`` command: the first
    round reads alice as alice, learns no quota can be known, and waits an hour."""
    assert shutil.which("quota") is None, "this host has quotas: test the other way round"
    settings = portal.settings.model_copy(
        update={"disk_user_alerts": "quota", "disk_user_alert_users": []}
    )
    watcher = DiskWatcher(settings, portal.services.database, runas=portal.services.executor.runas)
    assert watcher.read_users(["alice"]) == {"alice": []}  # read, nothing to watch
    assert watcher.read_users(["alice"]) == {}  # not read again
    assert watcher.check_sync([], ["alice"]).notices == []
