"""GFS retention over a simulated year of daily backups (issue 12, item 5).

Backups are folders with a manifest whose ``created_at`` is the simulated day (no
database is dumped 365 times). The expected set is written out by hand from the
calendar, not computed by the rule under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.services.operations.backup import PREFIX, list_backups
from hpcportal.services.operations.manifest import Manifest, write_manifest
from hpcportal.services.operations.retention import Policy, apply_retention

FIRST = date(2025, 12, 3)
LAST = date(2026, 12, 2)  # a Wednesday


def make_backup(folder: Path, day: date) -> None:
    moment = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
    path = folder / f"{PREFIX}{moment:%Y%m%dT%H%M%SZ}"
    path.mkdir(parents=True)
    write_manifest(
        path,
        Manifest(
            portal_version="0.1.0",
            created_at=moment,
            alembic_revision="0011_notification_preferences",
            database_backend="sqlite",
            database_method=None,
            entries=[],
        ),
    )


def kept_days(folder: Path) -> list[date]:
    return [b.manifest.created_at.date() for b in list_backups(folder) if b.manifest]


EXPECTED = sorted(
    # daily 7: the last seven days
    [LAST - timedelta(days=n) for n in range(7)]
    # weekly 4: Sundays closing the ISO weeks of Nov 16-22 and Nov 9-15 (the two newer
    # weeks' newest backups, Dec 2 and Nov 29, are daily ones already)
    + [date(2026, 11, 22), date(2026, 11, 15)]
    # monthly 12: the last day of Oct back to Jan (Dec 2 and Nov 30 are daily ones)
    + [
        date(2026, 10, 31),
        date(2026, 9, 30),
        date(2026, 8, 31),
        date(2026, 7, 31),
        date(2026, 6, 30),
        date(2026, 5, 31),
        date(2026, 4, 30),
        date(2026, 3, 31),
        date(2026, 2, 28),
        date(2026, 1, 31),
    ]
)


def test_a_year_of_daily_backups_pruned_daily_keeps_exactly_the_policy(tmp_path: Path) -> None:
    policy = Policy(daily=7, weekly=4, monthly=12)
    day = FIRST
    while day <= LAST:
        make_backup(tmp_path, day)
        apply_retention(tmp_path, policy)
        day += timedelta(days=1)
    assert kept_days(tmp_path) == EXPECTED
    assert len(EXPECTED) == 19


def test_pruning_once_at_the_end_keeps_the_same(tmp_path: Path) -> None:
    day = FIRST
    while day <= LAST:
        make_backup(tmp_path, day)
        day += timedelta(days=1)
    decision = apply_retention(tmp_path, Policy(daily=7, weekly=4, monthly=12))
    assert len(decision.delete) == 365 - 19
    assert kept_days(tmp_path) == EXPECTED


def test_dry_run_lists_but_deletes_nothing(tmp_path: Path) -> None:
    for n in range(40):
        make_backup(tmp_path, LAST - timedelta(days=n))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        app,
        [
            "cluster", "prune", "--dir", str(tmp_path), "--dry-run",
            "--keep-daily", "3", "--keep-weekly", "0", "--keep-monthly", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("would delete ") == 37
    assert "3 kept, 37 would delete" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_policy_that_keeps_nothing_is_refused(tmp_path: Path) -> None:
    make_backup(tmp_path, LAST)
    result = CliRunner().invoke(
        app,
        [
            "cluster", "prune", "--dir", str(tmp_path),
            "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Error: retention keeps nothing" in result.output
    assert len(list_backups(tmp_path)) == 1
