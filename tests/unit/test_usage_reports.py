"""Questions to the usage store and the job-usage and custom kinds built on them.

The store is filled by the real ingester from the sacct stand-in of
``test_usage_ingest`` (alice and bob in physics, bob and dave in chem), on SQLite,
PostgreSQL and MariaDB. Checked: sums by dimension and over time from the hourly and
the daily rollups agree, who may see what (a user their own jobs, a coordinator their
account, an admin everything; naming more is a 403), and the documents' tables,
previous period, sources and Korean text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden
from hpcportal.services.reports.document import Period, ReportDocument
from hpcportal.services.reports.ingest import UsageIngester
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.kinds.text import TEXT
from hpcportal.services.reports.spec import ReportScope, ReportSpec, Viewer
from hpcportal.services.reports.usage import UsageQuery, query_for
from tests.unit.test_usage_ingest import NOW, Clock, History, Leader, sample, settings_for

ADMIN = Viewer("carol", is_admin=True)
ALICE = Viewer("alice")
DAVE = Viewer("dave", coordinates=frozenset({"chem"}))
DAY = Period(start=datetime(2026, 12, 3, tzinfo=UTC), end=datetime(2026, 12, 4, tzinfo=UTC))


@pytest.fixture
def store(database: Database, db_settings: Settings) -> Database:
    UsageIngester(
        settings_for(db_settings), database, History(sample()), Leader(), clock=Clock(NOW)
    ).run()
    return database


def ask(database: Database, viewer: Viewer, **fields: Any) -> Any:
    scope = fields.pop("scope", None)
    with database.session() as session:
        return query_for(
            session, UsageQuery(period=fields.pop("period", DAY), **fields), viewer, scope
        )


def test_sums_by_user_from_the_daily_and_the_hourly_rollups(store: Database) -> None:
    daily = ask(store, ADMIN, dimensions=["user"], measures=["jobs", "cpu_hours", "failed"])
    assert daily.table == "usage_daily"
    got = {r.keys["user"]: r.values for r in daily.rows}
    assert got == {
        "alice": {"jobs": 2, "cpu_hours": (4 * 3600 + 2 * 60) / 3600, "failed": 1},
        "bob": {"jobs": 2, "cpu_hours": 2 * 600 / 3600, "failed": 0},
        "dave": {"jobs": 1, "cpu_hours": 2.0, "failed": 0},
    }
    # Not on UTC midnights: the hourly rollup answers, widened to whole hours.
    odd = Period(start=DAY.start + timedelta(minutes=90), end=DAY.end - timedelta(minutes=30))
    hourly = ask(
        store, ADMIN, period=odd, dimensions=["user"], measures=["jobs", "cpu_hours", "failed"]
    )
    assert hourly.table == "usage_hourly"
    assert hourly.window == Period(start=DAY.start + timedelta(hours=1), end=DAY.end)
    assert {r.keys["user"]: r.values for r in hourly.rows} == got
    assert daily.totals["jobs"] == 5
    assert daily.slurm_release == "22.05.11"


def test_over_time_in_a_time_zone(store: Database) -> None:
    by_hour = ask(store, ADMIN, dimensions=["time"], measures=["jobs"], granularity="hour")
    assert [(r.keys["time"], r.values["jobs"]) for r in by_hour.rows] == [
        ("2026-12-03 09:00", 2),
        ("2026-12-03 10:00", 3),
    ]
    seoul = ask(
        store,
        ADMIN,
        dimensions=["time"],
        measures=["jobs"],
        granularity="hour",
        time_zone="Asia/Seoul",
    )
    assert seoul.table == "usage_hourly"
    assert [r.keys["time"] for r in seoul.rows] == ["2026-12-03 18:00", "2026-12-03 19:00"]


def test_measures_derived_from_the_sums(store: Database) -> None:
    result = ask(store, ADMIN, filters={"user": ["dave"]})
    v = result.totals
    assert v["timed_out"] == 1 and v["started"] == 1
    assert v["wall_accuracy"] == pytest.approx(1.0)  # ran its whole hour
    assert v["cpu_efficiency"] == pytest.approx(0.5)  # the stand-in used half its CPUs
    assert v["mean_wait_minutes"] == pytest.approx(0.5)
    assert v["memory_gb_hours"] == pytest.approx(1.0)


def test_each_viewer_sees_what_slurm_lets_them(store: Database) -> None:
    mine = ask(store, ALICE, dimensions=["user"], measures=["jobs"])
    assert {r.keys["user"] for r in mine.rows} == {"alice"}
    coordinator = ask(store, DAVE, dimensions=["account", "user"], measures=["jobs"])
    assert {(r.keys["account"], r.keys["user"]) for r in coordinator.rows} == {
        ("chem", "bob"),
        ("chem", "dave"),
    }
    everyone = ask(store, ADMIN, dimensions=["account"], measures=["jobs"])
    assert {r.keys["account"]: r.values["jobs"] for r in everyone.rows} == {"physics": 3, "chem": 2}
    with pytest.raises(Forbidden, match="own jobs only, not of bob"):
        ask(store, ALICE, filters={"user": ["bob"]})
    with pytest.raises(Forbidden, match=r"account\(s\) physics"):
        ask(store, DAVE, scope=ReportScope(accounts=["physics"]))
    with pytest.raises(Forbidden, match="physics"):
        ask(store, ALICE, scope=ReportScope(accounts=["physics"]))
    # A coordinator naming a user sees that user's jobs in their accounts only.
    bob = ask(
        store, DAVE, scope=ReportScope(users=["bob"]), dimensions=["account"], measures=["jobs"]
    )
    assert {r.keys["account"] for r in bob.rows} == {"chem"}


def spec(kind: str, **fields: Any) -> ReportSpec:
    return ReportSpec.model_validate({"kind": kind, "period": DAY.model_dump(), **fields})


def build(database: Database, s: ReportSpec, viewer: Viewer) -> ReportDocument:
    with database.session() as session:
        return build_report(s, viewer, session, now=NOW)


def test_job_usage_report_with_the_previous_period(store: Database) -> None:
    doc = build(store, spec("job_usage"), ADMIN)
    assert doc.kind == "job_usage" and doc.scope == "all"
    assert doc.previous_period == Period(start=DAY.start - timedelta(days=1), end=DAY.start)
    titles = [s.title for s in doc.sections]
    assert titles == [
        "Summary",
        "Over time",
        "By user",
        "By account",
        "By partition",
        "Jobs by state",
    ]
    by_account = doc.sections[3].tables[0]
    keys = [c.key for c in by_account.columns]
    rows = {r[0]: dict(zip(keys, r, strict=True)) for r in by_account.rows}
    assert rows["physics"]["jobs"] == 3
    assert rows["chem"]["cpu_hours"] == pytest.approx(2.0)
    assert by_account.previous == []  # nothing ended the day before
    assert by_account.source is not None and by_account.source.slurm_release == "22.05.11"
    states = doc.sections[5].tables[0]
    assert [r[1] for r in states.rows] == [2, 1, 1, 1, 0]
    assert doc.sections[1].charts[0].labels == ["2026-12-03 09:00", "2026-12-03 10:00"]
    # The period before holds the jobs when the report covers the next day.
    next_day = Period(start=DAY.end, end=DAY.end + timedelta(days=1))
    later = build(store, spec("job_usage", period=next_day.model_dump()), ADMIN)
    later_accounts = later.sections[3].tables[0]
    assert later_accounts.rows == [] and later_accounts.previous is not None
    assert {r[0] for r in later_accounts.previous} == {"physics", "chem"}


def test_reports_in_korean_and_within_the_viewers_scope(store: Database) -> None:
    doc = build(store, spec("job_usage", language="ko"), DAVE)
    assert doc.title == "작업 사용량" and doc.language == "ko"
    assert doc.scope == "계정 chem, 사용자 dave"
    assert [s.title for s in doc.sections][:2] == ["요약", "기간별 추이"]
    by_user = doc.sections[2].tables[0]
    assert by_user.columns[0].title == "사용자"
    assert {r[0] for r in by_user.rows} == {"bob", "dave"}
    with pytest.raises(Forbidden):
        build(store, spec("custom", filters={"account": ["physics"]}), DAVE)


def test_custom_report(store: Database) -> None:
    s = spec("custom", dimensions=["partition", "size_bucket"], measures=["gpu_hours", "jobs"],
             filters={"account": ["physics"]})  # fmt: skip
    doc = build(store, s, ADMIN)
    table = doc.sections[0].tables[0]
    assert [c.key for c in table.columns] == ["partition", "size_bucket", "gpu_hours", "jobs"]
    assert [c.type for c in table.columns] == ["text", "text", "hours", "integer"]
    assert table.rows[0][:2] == ["gpu", "2-4"] and table.rows[0][2] == pytest.approx(600 / 3600)
    assert sum(r[3] for r in table.rows if isinstance(r[3], int)) == 3
    assert doc.sections[0].charts[0].labels[0] == "gpu"


def test_huge_periods_and_odd_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="three years"):
        spec("custom", period={"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"})
    with pytest.raises(ValueError, match="time zone"):
        spec("custom", time_zone="../../etc/passwd")


def test_every_phrase_has_both_languages() -> None:
    assert all(set(entry) == {"en", "ko"} and all(entry.values()) for entry in TEXT.values())
