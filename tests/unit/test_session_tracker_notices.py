"""Interactive sessions' bell notifications: ready once, ending soon once (issue 15).

Through the tracker's pass, as the portal runs it, on SQLite and PostgreSQL (the
``database`` fixture): a second pass, or a second tracker (another replica), stores
nothing more and pushes nothing more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hpcportal.db.models import InteractiveSession, Notification
from hpcportal.db.session import Database
from hpcportal.services.notifications.detector import Delivery
from hpcportal.services.sessions.notices import notices
from hpcportal.services.snapshot import ClusterSnapshot
from tests.unit.test_session_tracker import (
    FOLDER,
    JOBS,
    NODES,
    PARTITIONS,
    TLS_CERT,
    StandInAccounting,
    StandInRunAs,
    _key_file,  # noqa: F401  (autouse: each test's own key file)
    _row,
    _tracker,
)

SID = "a" * 16


def _runas() -> StandInRunAs:
    connection = {"type": "web", "port": 8888, "token": "t0k3n", "tls_cert": TLS_CERT}
    return StandInRunAs({FOLDER.format(SID) + "/connection.json": json.dumps(connection).encode()})


def _snap(ends_in: timedelta) -> ClusterSnapshot:
    """Job 10 (running on viz-node001) started now, ending ``ends_in`` from now."""
    now = datetime.now(UTC)
    update = {"start_time": now, "end_time": now + ends_in}
    jobs = [j.model_copy(update=update) if j.id == "10" else j for j in JOBS]
    return ClusterSnapshot.build(1, 0.0, jobs, NODES, PARTITIONS)


def _notes(database: Database) -> list[tuple[str, str, str | None, str]]:
    with database.session() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        return [(n.username, n.kind, n.job_id, n.event) for n in rows]


def test_a_session_turning_ready_is_told_once(database: Database) -> None:
    with database.session() as session:
        session.add(_row(SID, 10, connection="web"))
    runas = _runas()
    pushed: list[Delivery] = []
    first, second = (_tracker(database, runas, StandInAccounting([])) for _ in range(2))
    for tracker in (first, second):
        tracker.deliver = pushed.extend
    first.poll(_snap(timedelta(hours=2)))
    assert _notes(database) == [("alice", "session", "10", "ready")]
    assert [d.notification.event for d in pushed] == ["ready"]
    assert pushed[0].username == "alice" and pushed[0].unread == 1
    assert pushed[0].notification.params["session_id"] == SID
    assert "Desktop" in pushed[0].notification.body
    # Checked again, by the same tracker and by another replica's: nothing more.
    first.poll(_snap(timedelta(hours=2)))
    second.poll(_snap(timedelta(hours=2)))
    assert len(_notes(database)) == 1 and len(pushed) == 1


def test_two_replicas_storing_the_same_ready_session_store_one_row(database: Database) -> None:
    """Both saw the connection appear (a race the fence settles later): the row's key
    lets one insert win, and only that one pushes."""
    with database.session() as session:
        row = _row(SID, 10, connection="web")
        row.state, row.port = "running", 8888
        session.add(row)
    now = datetime.now(UTC)
    with database.session() as session:
        row = session.get(InteractiveSession, SID)
        assert row is not None
        first = notices(session, [row], [], now)
    with database.session() as session:
        row = session.get(InteractiveSession, SID)
        assert row is not None
        again = notices(session, [row], [], now)
    assert [d.notification.event for d in first] == ["ready"] and again == []
    assert _notes(database) == [("alice", "session", "10", "ready")]


def test_a_session_near_its_time_limit_is_told_ending_soon_once(database: Database) -> None:
    with database.session() as session:
        session.add(_row(SID, 10, connection="web"))
    runas = _runas()
    pushed: list[Delivery] = []
    tracker = _tracker(database, runas, StandInAccounting([]))
    tracker.deliver = pushed.extend
    minutes = tracker.ctx.submit.settings.notify_time_left_minutes
    # Ready, with more than the threshold left: not ending soon yet.
    tracker.poll(_snap(timedelta(minutes=minutes + 30)))
    assert [e for *_, e in _notes(database)] == ["ready"]
    # Less than the threshold left: told, once, however many passes and replicas.
    for _ in range(2):
        tracker.poll(_snap(timedelta(minutes=minutes - 3)))
    other = _tracker(database, runas, StandInAccounting([]))
    other.deliver = pushed.extend
    other.poll(_snap(timedelta(minutes=minutes - 3)))
    assert [e for *_, e in _notes(database)] == ["ready", "ending"]
    assert [d.notification.event for d in pushed] == ["ready", "ending"]
    ending = pushed[1].notification
    assert ending.kind == "session" and ending.job_id == "10"
    assert ending.params["minutes_left"] == minutes - 3
    assert f"{minutes - 3} minutes" in ending.body


def test_a_session_not_yet_ready_is_not_told_ending_soon(database: Database) -> None:
    with database.session() as session:
        session.add(_row(SID, 10, connection="web"))
    tracker = _tracker(database, StandInRunAs({}), StandInAccounting([]))
    tracker.poll(_snap(timedelta(minutes=2)))
    assert _notes(database) == []
