"""Disk alerts: levels, stored episodes told once, clearing, thresholds, probes, the
Prometheus source (against a real HTTP stand-in on 127.0.0.1), per-user quota
decisions from recorded numbers, and the notifications admins and users get.

Database tests run on SQLite and PostgreSQL (``database`` fixture of ``conftest``).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert, Notification
from hpcportal.db.session import Database
from hpcportal.runas.helper_space import parse_quota
from hpcportal.services import disk_alerts
from hpcportal.services import notifications as notes
from hpcportal.services.disk_alerts import DiskWatcher, Notice, Reading, Thresholds, ThresholdSet
from hpcportal.services.files import Quota, RootUsage, Space, UsageReport
from hpcportal.services.identity import Principal
from tests.prometheus_standin import node_fs_series, prometheus_standin
from tests.unit.conftest import TEST_SECRET

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIMITS = ThresholdSet(default=Thresholds(warning_percent=75, critical_percent=90))
ALICE = Principal("alice", 1001, 1001, ("research",), "user")
GiB = 1024**3


def reading(percent: float | None, target: str = "path:/data") -> Reading:
    if percent is None:
        return Reading(target, "shared", error="probe failed")
    return Reading(target, "shared", total=1000, used=int(percent * 10), percent=percent)


def step(database: Database, percent: float | None, minutes: int) -> list[Notice]:
    with database.session() as session:
        disk_alerts.record(session, [reading(percent)], LIMITS, NOW + timedelta(minutes=minutes))
        return disk_alerts.claim_notices(session)


def settings_for(database: Database, **overrides: Any) -> Settings:
    return Settings(
        database_url=database.engine.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(TEST_SECRET),
        **overrides,
    )


def stored_disk_notes(database: Database) -> list[tuple[str, str, int | None, str]]:
    with database.session() as session:
        rows = session.execute(
            select(Notification.username, Notification.target, Notification.episode,
                   Notification.event).where(Notification.kind == "disk")
        )  # fmt: skip
        return sorted((u, t or "", e, ev) for u, t, e, ev in rows)


# --- levels and episodes ------------------------------------------------------------------


def test_levels() -> None:
    limits = LIMITS.default
    assert disk_alerts.level_for(10, limits) == "info"
    assert disk_alerts.level_for(75, limits) == "warning"
    assert disk_alerts.level_for(90, limits) == "critical"
    assert disk_alerts.level_for(None, limits) == "unknown"
    with pytest.raises(ValueError):
        Thresholds(warning_percent=90, critical_percent=80)


def test_an_episode_is_told_once_per_level_and_its_end_once(database: Database) -> None:
    assert step(database, 50, 0) == []
    [warned] = step(database, 80, 1)
    assert (warned.level, warned.episode, warned.percent) == ("warning", 1, 80)
    assert step(database, 82, 2) == []  # still warning: not repeated
    [critical] = step(database, 95, 3)
    assert (critical.level, critical.episode) == ("critical", 1)  # escalation, same episode
    assert step(database, 85, 4) == []  # back to warning within the episode: nothing new
    assert step(database, None, 5) == []  # a failed reading neither tells nor clears
    assert step(database, 97, 6) == []  # critical again, same episode: told already
    with database.session() as session:
        row = session.get(DiskAlert, "path:/data")
        assert row is not None and row.active_since == NOW + timedelta(minutes=1)
        assert row.level == "critical" and row.error is None
    [cleared] = step(database, 40, 7)
    assert (cleared.level, cleared.episode, cleared.percent) == ("info", 1, 40)
    assert step(database, 30, 8) == []  # the end is told once
    with database.session() as session:
        row = session.get(DiskAlert, "path:/data")
        assert row is not None and row.active_since is None and row.level == "info"
        assert row.cleared_at == NOW + timedelta(minutes=7) and row.notified_rank == 0
    [again] = step(database, 80, 9)  # a new episode is told again
    assert (again.level, again.episode) == ("warning", 2)


def test_an_episode_never_told_ends_quietly(database: Database) -> None:
    """Claimed elsewhere or never claimed: no "back below" without a "warning"."""
    with database.session() as session:
        disk_alerts.record(session, [reading(80)], LIMITS, NOW)
        disk_alerts.record(session, [reading(10)], LIMITS, NOW + timedelta(minutes=1))
        assert disk_alerts.claim_notices(session) == []


def test_a_failed_reading_keeps_its_error_text(database: Database) -> None:
    step(database, 80, 0)
    with database.session() as session:
        disk_alerts.record(session, [reading(None)], LIMITS, NOW + timedelta(minutes=1))
        row = session.get(DiskAlert, "path:/data")
        assert row is not None and row.level == "unknown" and row.error == "probe failed"
        assert row.percent == 80  # the last usage seen stays


def test_thresholds_are_stored_and_reevaluated(database: Database) -> None:
    settings = Settings()
    step(database, 80, 0)
    with database.session() as session:
        stored = disk_alerts.get_thresholds(session, settings)
        assert stored.default.warning_percent == settings.disk_alert_warning_percent
        new = ThresholdSet(
            default=Thresholds(warning_percent=85, critical_percent=95),
            targets={"node:gpu001": Thresholds(warning_percent=50, critical_percent=60)},
        )
        disk_alerts.set_thresholds(session, new, "carol")
        disk_alerts.reevaluate(session, new, NOW + timedelta(minutes=1))
    with database.session() as session:
        assert disk_alerts.get_thresholds(session, settings) == new
        report = disk_alerts.report(session, settings)
        assert report.alerts == [] and report.targets[0].cleared_at is not None


def test_thresholds_per_target_then_per_kind_then_default() -> None:
    limits = ThresholdSet(
        default=Thresholds(warning_percent=75, critical_percent=90),
        targets={
            "user:*": Thresholds(warning_percent=95, critical_percent=99),
            "user:alice:home": Thresholds(warning_percent=1, critical_percent=2),
        },
    )
    assert limits.for_target("user:alice:home").warning_percent == 1
    assert limits.for_target("user:bob:home").warning_percent == 95
    assert limits.for_target("node:node001").warning_percent == 75
    assert limits.for_target("odd").warning_percent == 75


# --- reading usage ------------------------------------------------------------------------


def test_parse_df_and_probe() -> None:
    text = (
        "Filesystem     1024-blocks    Used Available Capacity Mounted on\n"
        "/dev/vda         1000      900       100      90% /scratch\n"
    )
    assert disk_alerts.parse_df(text) == (1000 * 1024, 900 * 1024, 100 * 1024)
    bytes_text = "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/x 10 5 5 50% /\n"
    assert disk_alerts.parse_df(bytes_text) == (10, 5, 5)
    with pytest.raises(ValueError):
        disk_alerts.parse_df("garbage")
    ok = disk_alerts.probe_node(["df", "-P", "-B1", "/tmp"], "node001", 10)
    assert ok.target == "node:node001" and ok.percent is not None and ok.error is None
    failed = disk_alerts.probe_node([sys.executable, "-c", "import sys; sys.exit(3)"], "n", 10)
    assert failed.error and failed.percent is None
    slow = disk_alerts.probe_node([sys.executable, "-c", "import time; time.sleep(5)"], "n", 0.2)
    assert slow.error and "probe failed" in slow.error


def test_shared_paths_are_read_with_statvfs() -> None:
    [tmp, missing] = disk_alerts.read_shared(["/tmp", "/nonexistent-hpcportal"])
    vfs = os.statvfs("/tmp")
    used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
    assert tmp.total == vfs.f_blocks * vfs.f_frsize
    assert tmp.percent is not None
    assert abs(tmp.percent - 100 * used / (used + vfs.f_bavail * vfs.f_frsize)) < 0.5
    assert missing.error and missing.percent is None


# --- node scratch from Prometheus (a stand-in server on 127.0.0.1) ------------------------


def prom_settings(url: str, **overrides: Any) -> Settings:
    return Settings(**{"prometheus_url": url, "prometheus_timeout": 2.0, **overrides})


def test_prometheus_sizes_become_readings_with_one_query() -> None:
    series = (
        node_fs_series("node001:9100", size=100 * GiB, free=20 * GiB, avail=15 * GiB)
        + node_fs_series(
            "node002.cluster.example:9100", size=100 * GiB, free=80 * GiB, avail=75 * GiB
        )
        + node_fs_series("login1:9100", size=10 * GiB, free=1 * GiB, avail=1 * GiB)
    )
    with prometheus_standin(series=series) as prom:
        settings = prom_settings(prom.url)
        readings = disk_alerts.read_prometheus(settings, ["node001", "node002", "node003"])
    assert prom.queries == [settings.prometheus_scratch_query]  # one instant query
    by_target = {r.target: r for r in readings}
    assert set(by_target) == {"node:node001", "node:node002", "node:node003"}  # login1: no
    n1 = by_target["node:node001"]
    # df's rule: used = size - free, percent = used / (used + avail)
    assert (n1.total, n1.used) == (100 * GiB, 80 * GiB)
    assert n1.percent == round(100 * 80 / 95, 2) and n1.error is None
    assert by_target["node:node002"].percent == round(100 * 20 / 95, 2)  # domain dropped
    n3 = by_target["node:node003"]
    assert n3.percent is None and n3.error and "no series" in n3.error


def test_prometheus_percent_expression_and_unknown_nodes() -> None:
    series = [
        {"metric": {"instance": "node001:9100"}, "value": 91.234},
        {"metric": {"instance": "node002:9100"}, "value": "NaN"},
    ]
    with prometheus_standin(series=series) as prom:
        # No node list (no snapshot yet): every node Prometheus knows.
        readings = disk_alerts.read_prometheus(prom_settings(prom.url), [])
    by_target = {r.target: r for r in readings}
    assert by_target["node:node001"].percent == 91.23
    assert by_target["node:node002"].error  # NaN is no reading
    assert disk_alerts.level_for(by_target["node:node001"].percent, LIMITS.default) == "critical"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"status": 400, "error": "parse error at char 3"}, "(bad_data): parse error at char 3"),
        ({"status": 502, "raw": b"<html>bad gateway</html>"}, "HTTP 502 without its API's"),
        ({"raw": b'{"status": "success", "data": {"resultType": "matrix", "result": []}}'},
         "matrix result"),
        ({"delay": 3.0}, "Prometheus query failed"),
    ],
)  # fmt: skip
def test_prometheus_failures_are_unknown_with_the_reason(
    answer: dict[str, Any], expected: str
) -> None:
    with prometheus_standin(**answer) as prom:
        settings = prom_settings(prom.url, prometheus_timeout=0.5)
        readings = disk_alerts.read_prometheus(settings, ["node001", "node002"])
        nobody = disk_alerts.read_prometheus(settings, [])
    assert [r.target for r in readings] == ["node:node001", "node:node002"]
    for r in readings + nobody:
        assert r.percent is None and r.error and expected in r.error, r.error
    assert [r.target for r in nobody] == [disk_alerts.PROMETHEUS_TARGET]


def test_prometheus_unreachable_is_unknown() -> None:
    with prometheus_standin() as prom:
        url = prom.url
    [r] = disk_alerts.read_prometheus(prom_settings(url), ["node001"])
    assert r.percent is None and r.error and "Prometheus query failed" in r.error


def test_the_watcher_reads_scratch_from_prometheus_not_the_probe(database: Database) -> None:
    series = node_fs_series("node001:9100", size=1000, free=50, avail=50) + node_fs_series(
        "node002:9100", size=1000, free=900, avail=900
    )
    with prometheus_standin(series=series) as prom:
        settings = settings_for(
            database,
            prometheus_url=prom.url,
            # A probe that would fail: it must not run when Prometheus is configured.
            disk_scratch_probe=[sys.executable, "-c", "import sys; sys.exit(9)"],
            disk_user_alerts="off",
            admin_group="daemon",
            min_uid=1,
        )
        result = DiskWatcher(settings, database).check_sync(["node001", "node002"])
        assert len(prom.queries) == 1
        prom.error, prom.status = "overloaded", 503
        DiskWatcher(settings, database).check_sync(["node001", "node002"])
    assert [(n.target, n.level) for n in result.notices] == [("node:node001", "critical")]
    with database.session() as session:
        n1, n2 = session.get(DiskAlert, "node:node001"), session.get(DiskAlert, "node:node002")
        assert n1 is not None and n2 is not None
        # The failed query: unknown with the reason, last usage and the episode kept.
        assert n1.level == "unknown" and n1.error and "overloaded" in n1.error
        assert n1.percent == 95.0 and n1.active_since is not None
        assert n2.level == "unknown"


# --- a user's own quota and areas ---------------------------------------------------------

#: ``quota -w -p`` as alice on a host with quotas (1 KiB blocks; grace in seconds).
RECORDED_QUOTA = """\
Disk quotas for user alice (uid 1001):
     Filesystem   space   quota   limit   grace   files   quota   limit   grace
      /dev/sdb1  7900000  8000000 10000000       0   1200       0       0       0
      /dev/sdc1  4000000*  3000000  5000000  604800     10       0       0       0
      /dev/sdd1     100       0       0       0     10       0       0       0
"""


def recorded_usage() -> UsageReport:
    quotas = {q["filesystem"]: Quota(**q) for q in parse_quota(RECORDED_QUOTA)}
    space = Space(total=1000 * GiB, used=800 * GiB, available=200 * GiB, percent=80.0)
    return UsageReport(
        roots=[
            RootUsage(name="home", path="/home/alice", space=space, quota=quotas["/dev/sdb1"]),
            RootUsage(name="projects", path="/p/alice", space=space, quota=quotas["/dev/sdb1"]),
            RootUsage(name="scratch", path="/scratch/alice", space=space,
                      quota=quotas["/dev/sdc1"]),
            RootUsage(name="data", path="/data/alice", space=space, quota=quotas["/dev/sdd1"]),
            RootUsage(name="broken", path="/b/alice", space=None, error="Permission denied"),
        ],
        quota_known=True,
    )  # fmt: skip


def test_user_readings_from_a_recorded_quota() -> None:
    readings = {r.target: r for r in disk_alerts.user_readings("alice", recorded_usage(), "quota")}
    # home and projects share /dev/sdb1: one quota, told once (under the first area).
    assert set(readings) == {"user:alice:home", "user:alice:scratch"}
    home, scratch = readings["user:alice:home"], readings["user:alice:scratch"]
    assert (home.kind, home.username, home.used, home.total) == (
        "quota", "alice", 7900000 * 1024, 8000000 * 1024,
    )  # fmt: skip
    assert home.percent == 98.75  # of the soft limit
    assert scratch.percent == 133.33  # over the soft limit
    levels = {t: disk_alerts.level_for(r.percent, LIMITS.default) for t, r in readings.items()}
    assert levels == {"user:alice:home": "critical", "user:alice:scratch": "critical"}


def test_user_readings_fall_back_to_the_area_only_when_asked() -> None:
    both = {
        r.target: r for r in disk_alerts.user_readings("alice", recorded_usage(), "quota_or_area")
    }
    # /dev/sdd1 has no limits: the disk holding the area is used instead.
    assert both["user:alice:data"].kind == "area" and both["user:alice:data"].percent == 80.0
    assert both["user:alice:broken"].error == "Permission denied"
    assert both["user:alice:home"].kind == "quota"
    assert disk_alerts.user_readings("alice", recorded_usage(), "off") == []
    no_quota = UsageReport(roots=[], quota_known=False, quota_note="quota is not installed")
    assert disk_alerts.user_readings("alice", no_quota, "quota") == []


def test_user_targets_are_told_to_the_user_and_shown_only_to_them(database: Database) -> None:
    settings = settings_for(database, admin_group="daemon", min_uid=1)
    user = Reading("user:alice:home", "quota", 100, 95, 95.0, username="alice")
    shared = Reading("path:/data", "shared", 100, 80, 80.0)
    with database.session() as session:
        disk_alerts.record(session, [user, shared], LIMITS, NOW)
        notices = disk_alerts.claim_notices(session)
        deliveries = disk_alerts.tell(session, settings, notices, LIMITS)
    told = sorted((d.username, d.notification.target, d.notification.event) for d in deliveries)
    assert told == [
        ("alice", "user:alice:home", "disk_critical"),
        ("daemon", "path:/data", "disk_warning"),
    ]
    alice_note = next(d.notification for d in deliveries if d.username == "alice")
    assert alice_note.kind == "disk" and alice_note.job_id is None
    assert alice_note.params["area"] == "quota" and alice_note.params["name"] == "home"
    assert alice_note.body == "You have used 95.0 % of your quota on home (threshold 90.0 %)."
    with database.session() as session:
        mine = disk_alerts.report(session, settings, ALICE)
        bobs = disk_alerts.report(session, settings, Principal("bob", 1002, 1001, (), "user"))
    assert [t.target for t in mine.yours] == ["user:alice:home"]
    assert [t.target for t in mine.targets] == ["path:/data"]  # not in everyone's list
    assert bobs.yours == [] and [t.target for t in bobs.alerts] == ["path:/data"]


def test_a_user_target_no_longer_read_is_forgotten(database: Database) -> None:
    with database.session() as session:
        disk_alerts.record(session, [Reading("user:alice:home", "quota", 10, 9, 90.0,
                                             username="alice")], LIMITS, NOW)  # fmt: skip
        disk_alerts.forget_user_targets(session, "alice", [])
        assert session.get(DiskAlert, "user:alice:home") is None


# --- who is told ------------------------------------------------------------------------


def test_admins_are_the_admin_groups_members_who_may_log_in() -> None:
    # Debian's base-passwd has daemon (UID 1), whose primary group is "daemon".
    assert disk_alerts.admin_usernames(Settings(admin_group="daemon", min_uid=1)) == ["daemon"]
    assert disk_alerts.admin_usernames(Settings(admin_group="daemon", min_uid=1000)) == []
    assert disk_alerts.admin_usernames(Settings(admin_group="no-such-group-hpcportal")) == []


def test_events_go_to_every_admin_or_to_the_user() -> None:
    notices = [
        Notice("node:node001", "warning", 80.0, "scratch", None, 3),
        Notice("user:bob:scratch", "info", 20.0, "area", "bob", 2),
    ]
    events = disk_alerts.events_for(notices, LIMITS, ["carol", "erin"])
    assert sorted((e.username, e.target, e.episode, e.event) for e in events) == [
        ("bob", "user:bob:scratch", 2, "disk_cleared"),
        ("carol", "node:node001", 3, "disk_warning"),
        ("erin", "node:node001", 3, "disk_warning"),
    ]
    by_user = {e.username: e for e in events}
    assert by_user["carol"].body == "Scratch on node node001 is 80.0 % full (threshold 75.0 %)."
    assert by_user["bob"].title == "Disk usage back below threshold"
    assert by_user["bob"].params["level"] == "info"


def test_the_watcher_tells_admins_once_and_the_end_once(database: Database, tmp_path: Any) -> None:
    """Real statvfs of /tmp against thresholds just below and above its usage."""
    settings = settings_for(
        database, disk_alert_paths=["/tmp"], disk_user_alerts="off", admin_group="daemon", min_uid=1
    )
    [tmp] = disk_alerts.read_shared(["/tmp"])
    assert tmp.percent is not None
    if tmp.percent < 0.02:
        pytest.skip("/tmp is empty: no threshold can be below its usage")
    low = ThresholdSet(default=Thresholds(warning_percent=tmp.percent / 4,
                                          critical_percent=tmp.percent / 2))  # fmt: skip
    high = ThresholdSet(default=Thresholds(warning_percent=99.98, critical_percent=99.99))
    watcher = DiskWatcher(settings, database)
    assert watcher.change_thresholds(high, "carol").notices == []
    assert watcher.check_sync([]).notices == []  # below: nothing to say
    told = watcher.change_thresholds(low, "carol")
    assert [(d.username, d.notification.event) for d in told.deliveries] == [
        ("daemon", "disk_critical")
    ]
    assert told.deliveries[0].unread == 1
    # Checks while it stays critical, by this replica or another: nothing new.
    assert watcher.check_sync([]).deliveries == []
    assert DiskWatcher(settings, database).check_sync([]).deliveries == []
    ended = watcher.change_thresholds(high, "carol")
    assert [(d.username, d.notification.event) for d in ended.deliveries] == [
        ("daemon", "disk_cleared")
    ]
    assert watcher.check_sync([]).deliveries == []
    assert stored_disk_notes(database) == [
        ("daemon", "path:/tmp", 1, "disk_cleared"),
        ("daemon", "path:/tmp", 1, "disk_critical"),
    ]


def test_disk_notifications_are_stored_once_across_replicas(database: Database) -> None:
    """Two replicas that both claimed (a race the unique key settles): one row each."""
    event = notes.disk_event("carol", 1, "disk_warning", target="path:/data", area="shared",
                             name="/data", percent=80.0, threshold=75.0)  # fmt: skip
    with database.session() as session:
        first = notes.store_disk_events(session, [event, event])
    with database.session() as session:
        second = notes.store_disk_events(session, [event])
    assert [d.notification.event for d in first] == ["disk_warning"] and second == []
    later = notes.disk_event("carol", 2, "disk_warning", target="path:/data", area="shared",
                             name="/data", percent=81.0, threshold=75.0)  # fmt: skip
    with database.session() as session:
        assert len(notes.store_disk_events(session, [later])) == 1  # a new episode
    assert stored_disk_notes(database) == [
        ("carol", "path:/data", 1, "disk_warning"),
        ("carol", "path:/data", 2, "disk_warning"),
    ]
