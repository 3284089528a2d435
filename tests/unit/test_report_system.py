"""The system performance report on every database: admins only (403 for others),
node downtime from slurmdbd's node events (a stand-in for the adapter serving events,
including the recorded 22.05 answer), drains applied through the portal, and the
utilisation section saying why it has no history without Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.models import AdminChange
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden
from hpcportal.services.reports.document import ReportDocument, Table
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.kinds.system import availability
from hpcportal.services.reports.spec import Viewer
from hpcportal.slurm import parse
from hpcportal.slurm.formats import SlurmRelease
from hpcportal.slurm.models import NodeEvent
from tests.unit.report_seed import NOVEMBER, OCTOBER, at, spec
from tests.unit.slurm_fixtures import recorded

ADMIN = Viewer("carol", is_admin=True)


@dataclass
class StandInCluster:
    release: SlurmRelease | None


class StandInSlurm:
    """Stands in for ``SlurmAdapter`` (no slurmdbd in unit tests): serves events and
    remembers the window asked for."""

    def __init__(self, events: list[NodeEvent]) -> None:
        self.events = events
        self.asked: list[tuple[datetime, datetime]] = []

    def node_events(self, start: datetime, end: datetime) -> list[NodeEvent]:
        self.asked.append((start, end))
        return [e for e in self.events if e.start < end and (e.end is None or e.end > start)]

    def cluster(self) -> StandInCluster:
        return StandInCluster(SlurmRelease.parse("slurm 24.11.5"))


def event(node: str, start: datetime, end: datetime | None, drained: bool) -> NodeEvent:
    return NodeEvent(node=node, start=start, end=end, state="DRAIN" if drained else "DOWN",
                     drained=drained, reason="test", user="carol")  # fmt: skip


EVENTS = [
    event("node001", at(2, hour=10), at(2, hour=16), drained=True),  # 6 h drained
    event("node001", at(2, hour=14), at(2, hour=18), drained=False),  # 4 h down, 2 overlap
    event("node002", at(31, 10, hour=20), at(1, hour=2), drained=False),  # 2 h in Nov
    event("node003", at(30, hour=23), None, drained=True),  # open: until the end (1 h)
    event("node004", at(10, 10), at(10, 10, hour=5), drained=True),  # October only
]


def settings(**extra: Any) -> Settings:
    return Settings(database_url="sqlite://", jwt_secret=SecretStr("x" * 32), **extra)


def build(database: Database, viewer: Viewer, slurm: Any, **extra: Any) -> ReportDocument:
    prom = extra.pop("prometheus_url", None)
    with database.session() as s:
        return build_report(spec("system", **extra), viewer, s, settings=settings(
            prometheus_url=prom), adapter=slurm, now=at(1, 12, hour=12))  # fmt: skip


def table(doc: ReportDocument, title: str) -> Table:
    return next(t for sec in doc.sections for t in sec.tables if t.title == title)


def test_only_admins(database: Database) -> None:
    for viewer in (Viewer("alice"), Viewer("dave", coordinates=frozenset({"physics"}))):
        with pytest.raises(Forbidden, match="admins only"):
            build(database, viewer, StandInSlurm(EVENTS))


def test_node_downtime_and_the_previous_period(database: Database) -> None:
    with database.session() as s:
        s.add(AdminChange(at=at(2, hour=10), username="carol", kind="node.drain",
                          target="node:node[001-002]", reason="bad DIMM", commands=[],
                          previous={}, revert=[]))  # fmt: skip
        s.add(AdminChange(at=at(2, hour=10), username="carol", kind="qos.update",
                          target="qos:normal", reason="", commands=[], previous={},
                          revert=[]))  # fmt: skip
        s.commit()
    slurm = StandInSlurm(EVENTS)
    doc = build(database, ADMIN, slurm, previous=OCTOBER.model_dump(mode="json"))
    assert slurm.asked == [(OCTOBER.start, NOVEMBER.end)]
    nodes = table(doc, "Node availability")
    rows = {r[0]: r[1:] for r in nodes.rows}
    hours = (NOVEMBER.end - NOVEMBER.start).total_seconds() / 3600
    assert rows["node001"] == [4.0, 6.0, 2, pytest.approx(8 / hours)]
    assert rows["node002"] == [2.0, 0.0, 1, pytest.approx(2 / hours)]
    assert rows["node003"] == [0.0, 1.0, 1, pytest.approx(1 / hours)]
    assert "node004" not in rows
    assert nodes.previous is not None
    assert {r[0]: r[1:4] for r in nodes.previous} == {"node002": [4.0, 0.0, 1],
                                                       "node004": [0.0, 5.0, 1]}  # fmt: skip
    assert nodes.source is not None and nodes.source.slurm_release == "24.11.5"
    portal = table(doc, "Node changes through the portal")
    assert portal.rows == [[at(2, hour=10), "carol", "drain", "node[001-002]", "bad DIMM"]]
    utilisation = next(s for s in doc.sections if s.title == "Utilisation by partition")
    assert utilisation.text == "No history: Prometheus not configured."
    assert not utilisation.tables


def test_an_unreachable_prometheus_is_said(database: Database) -> None:
    doc = build(database, ADMIN, StandInSlurm([]), prometheus_url="http://127.0.0.1:9/")
    text = doc.sections[0].text or ""
    assert text.startswith("No history: ") and "127.0.0.1:9" in text


def test_korean(database: Database) -> None:
    doc = build(database, ADMIN, StandInSlurm(EVENTS), language="ko")
    assert doc.title == "시스템 성능 보고서"
    assert doc.sections[0].text == "기록 없음: Prometheus가 설정되지 않았습니다."
    assert table(doc, "노드 가용성").rows[0][0] == "node001"


def test_recorded_events_an_open_drain_counts_until_now() -> None:
    events = parse.parse_node_events(recorded("22.05/sacctmgr_events_open.txt"))
    day = events[-1].start.replace(hour=0, minute=0, second=0)
    period = type(NOVEMBER)(start=day, end=day + timedelta(days=1))
    now = events[-1].start + timedelta(minutes=30)
    rows = {r[0]: r for r in availability(events, period, now)}
    node004 = rows["node004"]
    closed = sum((e.end - e.start).total_seconds() for e in events
                 if e.node == "node004" and e.drained and e.end is not None)  # fmt: skip
    assert node004[2] == pytest.approx((closed + 1800) / 3600)
