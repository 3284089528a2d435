"""Slurm events for the graphs' time axis (``services.monitoring.events``): a job's
start and end; a node's admin changes from ``admin_changes`` (its own only, hostlists
expanded, within the window) and the time Slurm set its current drain or down reason;
who and why for admins only. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hpcportal.db.models import AdminChange
from hpcportal.db.session import Database
from hpcportal.services.monitoring.events import job_events, node_events
from hpcportal.slurm.models import Node
from hpcportal.slurm.states import NodeStatus

NOW = datetime.now(UTC).replace(microsecond=0)


def change(at: datetime, kind: str, target: str, reason: str) -> AdminChange:
    return AdminChange(at=at, username="carol", kind=kind, target=target, reason=reason,
                       commands=[], previous={}, revert=[])  # fmt: skip


def test_a_jobs_start_and_end() -> None:
    start, end = NOW - timedelta(minutes=10), NOW - timedelta(minutes=2)
    assert [(e.kind, e.at) for e in job_events(start, end).items] == [
        ("job_start", start.timestamp()), ("job_end", end.timestamp())]  # fmt: skip
    assert [e.kind for e in job_events(start, None).items] == ["job_start"]
    assert job_events(None, None).items == []


def test_a_nodes_admin_changes_and_reason_time(database: Database) -> None:
    with database.session() as session:
        session.add_all([
            change(NOW - timedelta(minutes=40), "node.drain", "node:node[001-003]", "disk"),
            change(NOW - timedelta(minutes=20), "node.resume", "node:node002", ""),
            change(NOW - timedelta(minutes=10), "node.down", "node:node004", "psu"),
            change(NOW - timedelta(minutes=5), "qos.modify", "qos:node002", "no"),
            change(NOW - timedelta(hours=3), "node.reboot", "node:node002", "old"),
        ])  # fmt: skip
        session.commit()
    drained = Node(name="node002", state="IDLE+DRAIN", status=NodeStatus.DRAINED, reason="fan",
                   reason_set_by="root", reason_time=NOW - timedelta(minutes=15))  # fmt: skip
    since = NOW - timedelta(hours=1)
    seen = node_events(database, drained, since, admin=True).items
    assert [(e.kind, e.at, e.detail) for e in seen] == [  # oldest first
        ("node_drain", (NOW - timedelta(minutes=40)).timestamp(), "carol: disk"),
        ("node_resume", (NOW - timedelta(minutes=20)).timestamp(), "carol"),
        ("node_reason", (NOW - timedelta(minutes=15)).timestamp(), "root: fan"),
    ]
    users = node_events(database, drained, since, admin=False).items
    assert [e.kind for e in users] == ["node_drain", "node_resume", "node_reason"]
    assert all(e.detail is None for e in users)
    # An idle node: no reason mark; node001 only had the drain; the window bounds.
    idle = Node(name="node001", state="IDLE", status=NodeStatus.IDLE, reason_time=NOW)
    assert [e.kind for e in node_events(database, idle, since, admin=True).items] == [
        "node_drain"]  # fmt: skip
    recent = NOW - timedelta(minutes=30)
    assert [e.kind for e in node_events(database, drained, recent, admin=True).items] == [
        "node_resume", "node_reason"]  # fmt: skip
    nobody = Node(
        name="gpu001", state="DOWN", status=NodeStatus.DOWN, reason_time=NOW - timedelta(days=2)
    )
    assert node_events(database, nobody, since, admin=True).items == []
