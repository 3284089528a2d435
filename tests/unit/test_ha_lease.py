"""The leader lease and its fence, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import select

from hpcportal.db.models import LeaderLease, RateCounter
from hpcportal.db.session import Database
from hpcportal.ha import Leadership, LeadershipLost, lease
from hpcportal.services.auth import utcnow

T0 = 1_800_000_000_000  # a fixed "now" in milliseconds
LEASE = 5_000


def acquire(database: Database, holder: str, token: int | None, now: int) -> int | None:
    with database.session() as session:
        return lease.acquire(session, holder, LEASE, token=token, clock_ms=now)


def counter_row(name: str) -> dict[str, object]:
    return {
        "username": name, "action": "fence-test", "window_seconds": 60, "window_index": 1,
        "count": 1, "expires_at": utcnow(),
    }  # fmt: skip


def rows(database: Database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(RateCounter.username).order_by(RateCounter.username)))


def test_first_taker_leads_until_expiry_then_a_takeover_increments_the_token(
    database: Database,
) -> None:
    assert acquire(database, "a", None, T0) == 1
    assert acquire(database, "b", None, T0 + 1_000) is None  # a's lease is live
    assert acquire(database, "a", 1, T0 + 2_000) == 1  # renewal keeps the token
    assert acquire(database, "b", None, T0 + 2_000 + LEASE - 1) is None
    # a stopped renewing: its lease ends, b takes over with a newer token.
    assert acquire(database, "b", None, T0 + 2_000 + LEASE) == 2
    # a comes back from a pause: its renewal is refused, and so is a takeover.
    assert acquire(database, "a", 1, T0 + 2_000 + LEASE + 10) is None
    with database.session() as session:
        state = lease.read(session)
    assert state is not None and (state.holder, state.token) == ("b", 2)
    # Released at shutdown: the next replica need not wait for the expiry.
    with database.session() as session:
        assert lease.release(session, "b", 2)
    assert acquire(database, "a", None, T0 + 2_000 + LEASE + 20) == 3


def test_a_stale_token_write_is_refused_and_rolled_back(database: Database) -> None:
    assert acquire(database, "a", None, T0) == 1
    assert acquire(database, "b", None, T0 + LEASE) == 2
    with pytest.raises(LeadershipLost), database.session() as session:
        session.add(RateCounter(**counter_row("from-a")))
        session.flush()
        lease.fence(session, 1)
    with database.session() as session:
        lease.fence(session, 2)
        session.add(RateCounter(**counter_row("from-b")))
    assert rows(database) == ["from-b"]


def test_a_takeover_waits_for_the_old_leaders_fenced_write(database: Database) -> None:
    """The fence holds the lease row until its transaction ends: a takeover is ordered
    after the old leader's write, never between its check and its commit."""
    assert acquire(database, "a", None, T0) == 1
    fenced = threading.Event()

    def old_leader() -> None:
        with database.session() as session:
            lease.fence(session, 1)
            fenced.set()
            time.sleep(0.5)
            session.add(RateCounter(**counter_row("late-a")))

    thread = threading.Thread(target=old_leader)
    thread.start()
    assert fenced.wait(5)
    asked_at = time.monotonic()
    assert acquire(database, "b", None, T0 + LEASE) == 2
    # The takeover waited for the old leader's transaction (about its 0.5 s) and its
    # write is committed when the takeover returns. Timestamps taken after each
    # thread's commit cannot order them: the woken takeover may return first.
    waited = time.monotonic() - asked_at
    assert rows(database) == ["late-a"]
    thread.join()
    assert waited >= 0.3, waited
    with pytest.raises(LeadershipLost), database.session() as session:
        lease.fence(session, 1)


def test_leadership_objects_elect_one_and_hand_over(database: Database) -> None:
    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=1.5)
        second = Leadership(database, replica_id="r2", lease_seconds=1.5)
        seen: list[bool] = []
        second.add_listener(seen.append)
        await first.start()
        await second.start()
        try:
            assert first.is_leader() and not second.is_leader()
            assert first.current_token() == 1 and second.current_token() is None
            with pytest.raises(LeadershipLost), second.fenced_session():
                pass
            await first.stop()  # releases the lease
            await second.tick()
            assert second.is_leader() and second.current_token() == 2
            assert seen == [True]
            assert await second.run_if_leader(lambda: asyncio.sleep(0, "ran")) == "ran"
            assert await first.run_if_leader(lambda: asyncio.sleep(0, "ran")) is None
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())


def test_one_server_is_always_leader_and_fences_nothing() -> None:
    single = Leadership.single()
    assert single.is_leader() and single.current_token() is None


def test_the_lease_row_is_what_the_model_says(database: Database) -> None:
    acquire(database, "a", None, T0)
    with database.session() as session:
        row = session.get(LeaderLease, lease.LEADER)
    assert row is not None and row.expires_at_ms == T0 + LEASE and row.acquired_at_ms == T0


def test_a_submission_whose_replica_died_is_taken_over_once_its_heartbeat_ends(
    database: Database,
) -> None:
    from hpcportal.db.models import Submission
    from hpcportal.services.submit_keys import claim, take_over

    row_id = claim(database, "alice", "k1", "digest", None, owner="r1")
    assert isinstance(row_id, int)
    lone = claim(database, "alice", "k2", "digest", None)  # one server: no owner
    assert isinstance(lone, int)
    with database.session() as session:
        lease.heartbeat(session, "r1", 60_000)
        row = session.get(Submission, row_id)
        single = session.get(Submission, lone)
        assert row is not None and single is not None
        session.expunge_all()
    assert not take_over(database, row, 600, owner="r2")  # r1 runs it: hands off
    with database.session() as session:
        lease.heartbeat(session, "r1", 0, alive=False)  # r1 died (or stopped)
    assert not take_over(database, single, 600, owner="r2")  # no owner: the time limit
    with database.session() as session:
        lease.heartbeat(session, "r2", 60_000)
    assert take_over(database, row, 600, owner="r2")
    assert not take_over(database, row, 600, owner="r3")  # r2 won it and runs
    with database.session() as session:
        taken = session.get(Submission, row_id)
        assert taken is not None and taken.owner == "r2"


def test_a_replaced_leaders_detector_stores_nothing_and_the_new_one_everything(
    database: Database,
) -> None:
    """Notifications across a leader change: the old leader's fenced write is refused
    (nothing stored, nothing pushed) and the new leader, reading what was stored,
    stores each event exactly once."""
    from tests.unit.test_notifications import detector, events, snap, stored

    assert acquire(database, "old", None, T0) == 1
    old, new = detector(database), detector(database)
    old.fence = lambda session: lease.fence(session, 1)
    old.process(snap(1))  # the first look: a baseline, stored under token 1
    assert acquire(database, "new", None, T0 + LEASE) == 2  # old paused past its lease
    finished = snap(2, **{"6": {"state": "COMPLETED", "exit_code": 0}})
    with pytest.raises(LeadershipLost):
        old.process(finished)
    assert stored(database) == []
    new.fence = lambda session: lease.fence(session, 2)
    assert events(new.process(finished)) == [("alice", "6", "completed")]
    assert events(new.process(finished)) == []
    assert stored(database) == [("alice", "6", "completed")]
