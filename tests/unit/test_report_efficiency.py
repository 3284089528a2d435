"""The efficiency report on every database: CPU efficiency and wall-time accuracy from
the daily rollups, short jobs from the per-job rows, wasted GPU hours of a job the
idle-GPU check flagged, the previous period's rows, scope and Korean text."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.models import GpuIdleNudge
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden
from hpcportal.services.reports.document import ReportDocument, Table
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.spec import Viewer
from tests.unit.report_seed import at, job, rollup, spec

ADMIN = Viewer("carol", is_admin=True)
DAVE = Viewer("dave", coordinates=frozenset({"physics"}))
BOB = Viewer("bob")


def seed(database: Database) -> None:
    with database.session() as s:
        rollup(s, at(5), "alice", "physics", "normal", jobs=2, started=2, cpu_seconds=36000,
               cpu_time_seconds=18000.0, wall_seconds=7200, requested_seconds=14400,
               memory_mb_seconds=1024 * 3600 * 4)  # fmt: skip
        rollup(s, at(10), "bob", "chem", "gpu", jobs=2, started=1, cpu_seconds=7200,
               cpu_time_seconds=7200.0, wall_seconds=7200, requested_seconds=7200,
               gpu_seconds=14400)  # fmt: skip
        rollup(s, at(15, 10), "alice", "physics", "normal", jobs=1, started=1,
               cpu_seconds=3600, cpu_time_seconds=900.0, wall_seconds=3600,
               requested_seconds=3600)  # fmt: skip
        rollup(
            s,
            at(1, 12),
            "alice",
            "physics",
            "normal",
            jobs=9,
            started=9,
            cpu_seconds=99999,
            cpu_time_seconds=1.0,
        )  # December: outside
        job(s, 101, "alice", "physics", "normal", at(5, hour=1), elapsed=120)
        job(s, 102, "alice", "physics", "normal", at(5, hour=3), elapsed=7080)
        job(s, 201, "bob", "chem", "gpu", at(10, hour=2), elapsed=7200, gpus=2)
        job(s, 202, "bob", "chem", "gpu", at(10, hour=4), elapsed=0, started=False, gpus=2)
        s.add(GpuIdleNudge(job_id="201", username="bob", job_name="train", nodes="gpu001",
                           gpus=2, peak_percent=1.0, threshold_percent=5.0, minutes=30.0,
                           nudged_at=at(10, hour=1)))  # fmt: skip
        s.commit()


def build(database: Database, viewer: Viewer, **extra: Any) -> ReportDocument:
    settings = Settings(database_url="sqlite://", jwt_secret=SecretStr("x" * 32))
    with database.session() as s:
        return build_report(spec("efficiency", **extra), viewer, s, settings=settings)


def table(doc: ReportDocument, title: str) -> Table:
    return next(t for sec in doc.sections for t in sec.tables if t.title == title)


def overview(t: Table, previous: bool = False) -> dict[str, Any]:
    rows = t.previous if previous else t.rows
    assert rows is not None
    return {str(r[0]): r[1] for r in rows}


def test_figures_and_the_previous_period(database: Database) -> None:
    seed(database)
    doc = build(database, ADMIN)
    assert (doc.kind, doc.title, doc.scope) == ("efficiency", "Efficiency report", "all")
    now = overview(table(doc, "Overview"))
    assert now["Started jobs"] == 3
    assert now["CPU efficiency"] == pytest.approx(25200 / 43200)
    assert now["Wall-time accuracy"] == pytest.approx(14400 / 21600)
    assert (now["Short jobs"], now["Short-job share"]) == (1, pytest.approx(1 / 3))
    assert (now["GPU hours"], now["Wasted GPU hours"]) == (4.0, 4.0)
    assert now["Memory GB-hours allocated"] == pytest.approx(4.0)
    before = overview(table(doc, "Overview"), previous=True)
    assert before["Started jobs"] == 1 and before["CPU efficiency"] == pytest.approx(0.25)
    assert before["Wasted GPU hours"] == 0
    users = table(doc, "Efficiency by user")
    assert [r[0] for r in users.rows] == ["alice", "bob"]
    assert users.previous is not None and [r[0] for r in users.previous] == ["alice"]
    assert doc.previous_period is not None and doc.previous_period.end == doc.period.start
    assert doc.sources[0].window == doc.period
    assert "Prometheus is not configured" in (doc.sections[0].text or "")


def test_scope_of_a_coordinator_and_a_user(database: Database) -> None:
    seed(database)
    dave = build(database, DAVE)
    assert [r[0] for r in table(dave, "Efficiency by account").rows] == ["physics"]
    bob = build(database, BOB)
    assert [r[0] for r in table(bob, "Efficiency by user").rows] == ["bob"]
    assert bob.scope == "user bob"
    with pytest.raises(Forbidden):
        build(database, BOB, scope={"accounts": ["physics"]})


def test_korean(database: Database) -> None:
    seed(database)
    doc = build(database, ADMIN, language="ko", compare_previous=False)
    assert doc.title == "효율 보고서" and doc.language == "ko"
    t = table(doc, "개요")
    assert t.previous is None and overview(t)["낭비된 GPU 시간"] == 4.0
