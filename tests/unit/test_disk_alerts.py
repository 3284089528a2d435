"""Disk alerts: levels, stored episodes told once, clearing, thresholds, probes."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert
from hpcportal.db.session import Database
from hpcportal.services import disk_alerts
from hpcportal.services.disk_alerts import Reading, Thresholds, ThresholdSet

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIMITS = ThresholdSet(default=Thresholds(warning_percent=75, critical_percent=90))


def reading(percent: float | None, target: str = "path:/data") -> Reading:
    if percent is None:
        return Reading(target, "shared", error="probe failed")
    return Reading(target, "shared", total=1000, used=int(percent * 10), percent=percent)


def step(database: Database, percent: float | None, minutes: int) -> list[disk_alerts.Notice]:
    with database.session() as session:
        disk_alerts.record(session, [reading(percent)], LIMITS, NOW + timedelta(minutes=minutes))
        return disk_alerts.claim_notices(session)


def test_levels() -> None:
    limits = LIMITS.default
    assert disk_alerts.level_for(10, limits) == "info"
    assert disk_alerts.level_for(75, limits) == "warning"
    assert disk_alerts.level_for(90, limits) == "critical"
    assert disk_alerts.level_for(None, limits) == "unknown"
    with pytest.raises(ValueError):
        Thresholds(warning_percent=90, critical_percent=80)


def test_an_episode_is_told_once_per_level_and_cleared(database: Database) -> None:
    assert step(database, 50, 0) == []
    [warned] = step(database, 80, 1)
    assert warned.level == "warning"
    assert step(database, 82, 2) == []  # still warning: not repeated
    [critical] = step(database, 95, 3)
    assert critical.level == "critical"
    assert step(database, 85, 4) == []  # back to warning within the episode: nothing new
    assert step(database, None, 5) == []  # a failed reading neither tells nor clears
    assert step(database, 97, 6) == []  # critical again, same episode: told already
    with database.session() as session:
        row = session.get(DiskAlert, "path:/data")
        assert row is not None and row.active_since == NOW + timedelta(minutes=1)
    assert step(database, 40, 7) == []
    with database.session() as session:
        row = session.get(DiskAlert, "path:/data")
        assert row is not None and row.active_since is None and row.level == "info"
        assert row.cleared_at == NOW + timedelta(minutes=7) and row.notified_rank == 0
    [again] = step(database, 80, 8)  # a new episode is told again
    assert again.level == "warning"


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
    assert tmp.percent is not None and tmp.total and tmp.total > 0
    assert missing.error and missing.percent is None
