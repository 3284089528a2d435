"""Report schedules and generated reports: periods and next runs in time zones (DST
included), one run per period across a leader change on every database, who sees
which report, and the workers' claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.models import Notification
from hpcportal.db.report_tables import GeneratedReport, ReportSchedule, ReportScheduleRun
from hpcportal.db.session import Database
from hpcportal.errors import InvalidInput, NotFound
from hpcportal.ha.leadership import Leadership
from hpcportal.ha.lease import LeadershipLost
from hpcportal.services.identity import Principal
from hpcportal.services.reports import generation, periods, schedules
from hpcportal.services.reports.document import Period, ReportDocument
from hpcportal.services.reports.periods import SchedulePeriod

ALICE = Principal("alice", 2001, 2001, ("alice",), "user")
BOB = Principal("bob", 2002, 2002, ("bob",), "user")
CAROL = Principal("carol", 2003, 2003, ("hpc-admins",), "admin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- periods and next runs -------------------------------------------------------------


def test_daily_weekly_monthly_periods_in_seoul() -> None:
    run = utc(2026, 12, 6, 21, 0)  # Monday 7 December 06:00 in Seoul (UTC+9)
    daily = periods.period_of_run("daily", "Asia/Seoul", run)
    assert daily == SchedulePeriod("2026-12-06", utc(2026, 12, 5, 15), utc(2026, 12, 6, 15))
    weekly = periods.period_of_run("weekly", "Asia/Seoul", run)
    assert weekly == SchedulePeriod("2026-W49", utc(2026, 11, 29, 15), utc(2026, 12, 6, 15))
    monthly = periods.period_of_run("monthly", "Asia/Seoul", utc(2026, 11, 30, 21))
    assert monthly == SchedulePeriod("2026-11", utc(2026, 10, 31, 15), utc(2026, 11, 30, 15))


def test_iso_week_key_at_the_turn_of_the_year() -> None:
    # Monday 4 January 2027: the week before began on Monday 28 December 2026 (2026-W53).
    period = periods.period_of_run("weekly", "UTC", utc(2027, 1, 4, 6))
    assert period.key == "2026-W53" and period.start == utc(2026, 12, 28)
    assert periods.period_of_run("monthly", "UTC", utc(2027, 1, 1, 6)).key == "2026-12"


def test_a_week_holding_a_dst_change_is_its_local_length() -> None:
    # New York leaves DST on Sunday 1 November 2026: that week has 169 hours.
    period = periods.period_of_run("weekly", "America/New_York", utc(2026, 11, 2, 11))
    assert period.key == "2026-W44"
    assert period.start == utc(2026, 10, 26, 4) and period.end == utc(2026, 11, 2, 5)
    assert period.end - period.start == timedelta(hours=169)


def test_next_run_keeps_local_time_across_dst() -> None:
    before = periods.next_run("daily", "06:00", "America/New_York", utc(2026, 10, 31, 12))
    after = periods.next_run("daily", "06:00", "America/New_York", before)
    assert before == utc(2026, 11, 1, 11)  # 06:00 EST (the change was at 02:00)
    assert after == utc(2026, 11, 2, 11)
    summer = periods.next_run("daily", "06:00", "America/New_York", utc(2026, 10, 30, 12))
    assert summer == utc(2026, 10, 31, 10)  # 06:00 EDT


def test_a_local_time_in_the_spring_gap_runs_once_that_day() -> None:
    # 8 March 2026, New York: 02:00-03:00 does not exist; 02:30 runs at 03:30 EDT.
    first = periods.next_run("daily", "02:30", "America/New_York", utc(2026, 3, 7, 12))
    second = periods.next_run("daily", "02:30", "America/New_York", first)
    assert first == utc(2026, 3, 8, 7, 30)
    assert second == utc(2026, 3, 9, 6, 30)


def test_fall_back_repeated_hour_runs_once() -> None:
    first = periods.next_run("daily", "01:30", "America/New_York", utc(2026, 10, 31, 12))
    second = periods.next_run("daily", "01:30", "America/New_York", first)
    assert first == utc(2026, 11, 1, 5, 30)  # the first 01:30 (EDT)
    assert second == utc(2026, 11, 2, 6, 30)


def test_weekly_and_monthly_next_runs() -> None:
    assert periods.next_run("weekly", "06:00", "UTC", utc(2026, 12, 3, 10)) == utc(2026, 12, 7, 6)
    assert periods.next_run("weekly", "06:00", "UTC", utc(2026, 12, 7, 6)) == utc(2026, 12, 14, 6)
    assert periods.next_run("monthly", "00:15", "Asia/Seoul", utc(2026, 12, 3)) == utc(
        2026, 12, 31, 15, 15
    )


@pytest.mark.parametrize("name", ["Mars/Olympus", "/etc/localtime", "../../etc/passwd", ""])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        periods.zone(name)


@pytest.mark.parametrize("text", ["6:00", "24:00", "06-00", "06:60", "x"])
def test_bad_times_of_day_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        periods.parse_time_of_day(text)


# --- stand-ins for the kinds and renderers (built by other parts of issue 14) -----------


def standin_build(spec: dict[str, Any], owner: str, progress: Any) -> ReportDocument:
    progress(50)
    window = Period(start=utc(2026, 11, 1), end=utc(2026, 12, 1))
    return ReportDocument(kind="job_usage", title=f"Usage of {owner}",
                          generated_at=utc(2026, 12, 3), period=window,
                          scope=f"user {owner}")  # fmt: skip


def standin_render(document: ReportDocument, fmt: str) -> bytes:
    return f"{fmt}:{document.title}".encode()


def with_period(
    spec: dict[str, Any], period: SchedulePeriod, previous: SchedulePeriod
) -> dict[str, Any]:
    return {**spec, "start": period.start.isoformat(), "previous": previous.key}


def _settings(database: Database) -> Settings:
    return Settings(database_url=str(database.engine.url.render_as_string(hide_password=False)),
                    jwt_secret=SecretStr("x" * 40))  # fmt: skip


# --- one run per period across a leader change --------------------------------------------


def test_a_weekly_schedule_runs_once_per_period_across_a_leader_change(database: Database) -> None:
    settings = _settings(database)
    created = utc(2026, 12, 3, 10)
    body = schedules.ScheduleIn(name="Weekly usage", spec={"kind": "job_usage"},
                                formats=["pdf", "csv"], frequency="weekly",
                                time_of_day="06:00", time_zone="Asia/Seoul")  # fmt: skip
    made = schedules.create(database, ALICE, body, body.spec, created)
    assert made.next_run_at == utc(2026, 12, 6, 21)  # Monday 06:00 in Seoul

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        await first.start()
        await second.start()
        try:
            old = schedules.ReportScheduler(settings, database, first, with_period)
            new = schedules.ReportScheduler(settings, database, second, with_period)
            due = utc(2026, 12, 6, 21, 0, 5)
            assert old.run(utc(2026, 12, 6, 20)) == []  # not due yet
            ids = old.run(due)
            assert len(ids) == 2
            # The old leader's next_run_at write is lost (as if two leaders overlapped):
            # the new leader, running the same scheduled instant, queues nothing.
            with database.session() as session:
                row = session.get(ReportSchedule, made.id)
                assert row is not None and row.last_period_key == "2026-W49"
                row.next_run_at = utc(2026, 12, 6, 21)
            await first.stop()
            await second.tick()
            assert second.is_leader()
            with pytest.raises(LeadershipLost):  # the old leader can no longer write
                schedules.run_one(database, first, settings, with_period, made.id, due)
            assert new.run(due) == []
            # The next week is the new leader's, once.
            later = utc(2026, 12, 13, 21, 1)
            assert len(new.run(later)) == 2 and new.run(later) == []
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    with database.session() as session:
        keys = session.execute(select(ReportScheduleRun.period_key, ReportScheduleRun.fencing_token)
                               .order_by(ReportScheduleRun.id)).all()  # fmt: skip
        reports = session.scalars(select(GeneratedReport).order_by(GeneratedReport.id)).all()
        assert [k for k, _ in keys] == ["2026-W49", "2026-W50"]
        assert keys[0][1] < keys[1][1]  # a later leader term ran the second week
        assert [(r.period_key, r.format) for r in reports] == [
            ("2026-W49", "pdf"),
            ("2026-W49", "csv"),
            ("2026-W50", "pdf"),
            ("2026-W50", "csv"),
        ]
        assert reports[0].spec["start"] == "2026-11-29T15:00:00+00:00"
        assert reports[0].spec["previous"] == "2026-W48"
        assert all(r.owner == "alice" and r.schedule_id == made.id for r in reports)


# --- who sees what ----------------------------------------------------------------------


def _queue(database: Database, owner: str, fmt: str = "pdf") -> int:
    settings = _settings(database)
    rows = generation.new_rows(owner, {"kind": "job_usage"}, "job_usage", [fmt], "en",
                               settings, utc(2026, 12, 3))  # fmt: skip
    return generation.create(database, rows).id


def test_bob_cannot_see_alices_reports(database: Database) -> None:
    report_id = _queue(database, "alice")
    assert generation.get(database, ALICE, report_id).owner == "alice"
    assert generation.get(database, CAROL, report_id).owner == "alice"
    for act in (
        lambda: generation.get(database, BOB, report_id),
        lambda: generation.download(database, BOB, report_id, None, standin_render),
        lambda: generation.remove(database, BOB, report_id),
    ):
        with pytest.raises(NotFound):
            act()
    assert generation.listing(database, BOB).items == []
    assert generation.listing(database, BOB, everyone=True).items == []
    assert [r.id for r in generation.listing(database, CAROL, everyone=True).items] == [report_id]
    assert generation.listing(database, CAROL).items == []
    generation.remove(database, ALICE, report_id)
    with pytest.raises(NotFound):
        generation.get(database, ALICE, report_id)


def test_bob_cannot_see_alices_schedules(database: Database) -> None:
    body = schedules.ScheduleIn(name="Daily", spec={"kind": "job_usage"}, formats=["csv"],
                                frequency="daily")  # fmt: skip
    made = schedules.create(database, ALICE, body, body.spec, utc(2026, 12, 3))
    with pytest.raises(NotFound):
        schedules.remove(database, BOB, made.id)
    assert schedules.listing(database, BOB).items == []
    assert [s.id for s in schedules.listing(database, CAROL, everyone=True).items] == [made.id]


# --- claiming, generating, announcing -----------------------------------------------------


def test_a_report_is_claimed_once_generated_and_announced_once(database: Database) -> None:
    settings = _settings(database)
    report_id = _queue(database, "alice", "csv")
    now = utc(2026, 12, 3, 12)
    stale = timedelta(minutes=30)
    first = generation.claim(database, "r1", now, stale)
    assert first is not None and first[0] == report_id
    assert generation.claim(database, "r2", now, stale) is None  # taken
    # r1 went silent: after the stale time r2 takes it again, and r1 can no longer write.
    second = generation.claim(database, "r2", now + stale + timedelta(seconds=1), stale)
    assert second is not None and second[0] == report_id and second[1] != first[1]
    assert generation.generate(database, settings, standin_build, standin_render,
                               report_id, first[1], lambda: now) == []  # fmt: skip
    assert generation.get(database, ALICE, report_id).state == "running"
    delivered = generation.generate(database, settings, standin_build, standin_render,
                                    report_id, second[1], lambda: now)  # fmt: skip
    assert [d.notification.event for d in delivered] == ["report_ready"]
    assert delivered[0].username == "alice" and delivered[0].notification.kind == "report"
    out = generation.get(database, ALICE, report_id)
    assert (out.state, out.progress, out.title) == ("done", 100, "Usage of alice")
    file = generation.download(database, ALICE, report_id, None, standin_render)
    assert file.content == b"csv:Usage of alice" and file.media_type.startswith("text/csv")
    assert file.filename == f"job_usage-2026-12-03-{report_id}.csv"
    other = generation.download(database, ALICE, report_id, "pdf", standin_render)
    assert other.content == b"pdf:Usage of alice" and other.media_type == "application/pdf"
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_failing_build_fails_the_report_with_its_reason(database: Database) -> None:
    settings = _settings(database)
    report_id = _queue(database, "alice")

    def broken(spec: dict[str, Any], owner: str, progress: Any) -> ReportDocument:
        raise ValueError("no usage ingested yet")

    claimed = generation.claim(database, "r1", utc(2026, 12, 3), timedelta(minutes=5))
    assert claimed is not None
    delivered = generation.generate(database, settings, broken, standin_render, report_id,
                                    claimed[1], lambda: utc(2026, 12, 3))  # fmt: skip
    assert [d.notification.event for d in delivered] == ["report_failed"]
    out = generation.get(database, ALICE, report_id)
    assert out.state == "failed" and out.error == "ValueError: no usage ingested yet"
    with pytest.raises(NotFound):
        generation.download(database, ALICE, report_id, None, standin_render)


def test_expired_reports_are_deleted_by_the_leader(database: Database) -> None:
    kept, gone = _queue(database, "alice"), _queue(database, "bob")
    with database.session() as session:
        row = session.get(GeneratedReport, gone)
        assert row is not None
        row.expires_at = utc(2026, 12, 4)
    leader = Leadership.single()
    assert generation.expire(database, leader.fence, utc(2026, 12, 5)) == 1
    assert generation.get(database, ALICE, kept).id == kept
    with pytest.raises(NotFound):
        generation.get(database, CAROL, gone)


# --- presets and the CLI's spec -------------------------------------------------------------


def test_presets_are_local_calendar_periods() -> None:
    now = utc(2026, 12, 3, 10)
    assert periods.preset("last_month", "Asia/Seoul", now).start == utc(2026, 10, 31, 15)
    assert periods.preset("this_month", "UTC", now) == SchedulePeriod(
        "2026-12", utc(2026, 12, 1), now
    )
    assert periods.preset("last_year", "UTC", now).key == "2025"
    assert periods.preset("last_30_days", "UTC", now).start == utc(2026, 11, 3, 10)
    with pytest.raises(InvalidInput):
        periods.preset("someday", "UTC", now)


def test_the_cli_builds_a_spec_the_portal_accepts() -> None:
    from hpcportal.cli.reports import build_spec
    from hpcportal.services.reports.spec import ReportSpec

    spec = build_spec("custom", None, "2026-11-01", "2026-12-01", "ko", "Asia/Seoul", ["alice"],
                      None, ["user", "time"], ["cpu_hours"], utc(2026, 12, 3))  # fmt: skip
    parsed = ReportSpec.model_validate(spec)
    assert parsed.period.start == utc(2026, 10, 31, 15) and parsed.language == "ko"
    assert parsed.scope.users == ["alice"] and parsed.dimensions == ["user", "time"]
    asked = build_spec("job_usage", "last_month", None, None, "en", "UTC", None, None, None,
                       None, utc(2026, 12, 3))  # fmt: skip
    monthly = ReportSpec.model_validate(asked)
    assert monthly.period.start == utc(2026, 11, 1) and monthly.period.end == utc(2026, 12, 1)
