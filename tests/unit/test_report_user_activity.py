"""The user activity report on every database: logins and submissions from the audit
log, interactive sessions from their table, per user and per day (in the spec's time
zone), the previous period, who sees whom, and Korean titles."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.models import AuditEntry, InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden
from hpcportal.services.reports.document import ReportDocument, Table
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.spec import Viewer
from tests.unit.report_seed import OCTOBER, at, job, spec

ADMIN = Viewer("carol", is_admin=True)
DAVE = Viewer("dave", coordinates=frozenset({"physics"}))


def audit(s: Any, when: datetime, user: str, action: str, result: str = "ok") -> None:
    s.add(AuditEntry(at=when, username=user, action=action, result=result, target=None))


def interactive(s: Any, sid: str, user: str, created: datetime, started: datetime | None,
                ended: datetime | None) -> None:  # fmt: skip
    s.add(InteractiveSession(
        id=sid, username=user, app_id="desktop", app_name="Desktop", connection="vnc",
        state="ended" if ended else "running", options={}, session_dir="/tmp/x",
        created_at=created, updated_at=created, started_at=started, ended_at=ended,
    ))  # fmt: skip


def seed(database: Database, logins: bool = True) -> None:
    with database.session() as s:
        if logins:
            audit(s, at(5, hour=9), "alice", "auth.login")
            audit(s, at(5, hour=16), "alice", "auth.login")  # Nov 6 in Seoul
            audit(s, at(20, 10), "alice", "auth.login")  # October
        audit(s, at(5, hour=10), "alice", "job.submit")
        audit(s, at(5, hour=11), "alice", "job.submit", "refused")
        audit(s, at(7, hour=11), "bob", "job.submit")
        audit(s, at(7, hour=12), "bob", "file.upload")  # not activity counted here
        interactive(s, "s1", "alice", at(6, hour=8), at(6, hour=8), at(6, hour=10))
        interactive(s, "s2", "bob", at(30, hour=22), at(30, hour=22), None)  # runs on
        interactive(s, "s0", "alice", at(31, 10, hour=23), at(31, 10, hour=23),
                    at(1, hour=1))  # October launch, 1 h in November  # fmt: skip
        job(s, 1, "alice", "physics", "normal", at(3), elapsed=60)
        s.commit()


def build(database: Database, viewer: Viewer, **extra: Any) -> ReportDocument:
    settings = Settings(database_url="sqlite://", jwt_secret=SecretStr("x" * 32))
    with database.session() as s:
        return build_report(spec("user_activity", previous=OCTOBER.model_dump(mode="json"),
                                 **extra), viewer, s, settings=settings)  # fmt: skip


def table(doc: ReportDocument, title: str) -> Table:
    return next(t for sec in doc.sections for t in sec.tables if t.title == title)


def test_per_user_per_day_and_the_previous_period(database: Database) -> None:
    seed(database)
    doc = build(database, ADMIN, time_zone="Asia/Seoul")
    users = {r[0]: r[1:] for r in table(doc, "Activity by user").rows}
    # logins, submissions, refused, sessions, session hours
    assert users["alice"] == [2, 1, 1, 1, pytest.approx(3.0)]
    assert users["bob"] == [0, 1, 0, 1, pytest.approx(2.0)]
    previous = table(doc, "Activity by user").previous
    assert previous is not None
    assert {r[0]: r[1:] for r in previous}["alice"] == [1, 0, 0, 1, pytest.approx(1.0)]
    days = {r[0]: r[1:] for r in table(doc, "Activity by day").rows}
    assert len(days) == 31  # November in UTC is Nov 1 09:00 to Dec 1 09:00 in Seoul
    assert date(2026, 11, 1) in days and date(2026, 12, 1) in days
    assert days[date(2026, 11, 5)][0] == 1 and days[date(2026, 11, 6)][0] == 1
    assert days[date(2026, 11, 5)][5] == 1  # active users that day
    overview = {r[0]: r[1] for r in table(doc, "Overview").rows}
    assert (overview["Logins"], overview["Submissions"], overview["Active users"]) == (2, 2, 2)
    assert "no login entries" not in (doc.sections[0].text or "")


def test_without_login_entries_logins_are_unknown(database: Database) -> None:
    seed(database, logins=False)
    doc = build(database, ADMIN)
    assert "logins are not known" in (doc.sections[0].text or "")


def test_who_sees_whom(database: Database) -> None:
    seed(database)
    dave = build(database, DAVE)
    assert [r[0] for r in table(dave, "Activity by user").rows] == ["alice"]
    bob = build(database, Viewer("bob"))
    assert [r[0] for r in table(bob, "Activity by user").rows] == ["bob"]
    with pytest.raises(Forbidden):
        build(database, Viewer("bob"), scope={"users": ["alice"]})
    narrowed = build(database, ADMIN, scope={"accounts": ["physics"]})
    assert [r[0] for r in table(narrowed, "Activity by user").rows] == ["alice"]


def test_korean(database: Database) -> None:
    seed(database)
    doc = build(database, ADMIN, language="ko")
    assert doc.title == "사용자 활동 보고서"
    assert [r[0] for r in table(doc, "사용자별 활동").rows] == ["alice", "bob"]
