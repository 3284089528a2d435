"""The outbox on SQLite, PostgreSQL and MariaDB: enqueue once per key in the caller's
transaction, the sender's claim/mark transitions fenced by token, dead letters resent,
history limited to its owner, and the backoff schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, InvalidInput
from hpcportal.services.delivery import outbox

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
HOLD = timedelta(seconds=30)


def _channel(database: Database, owner: str | None = None) -> int:
    with database.session() as session:
        channel = DeliveryChannel(
            owner=owner,
            kind="webhook",
            name="hook",
            target="https://hooks.example.org/in",
            language="en",
            verified_at=NOW,
            enabled=True,
            created_at=NOW,
        )
        session.add(channel)
        session.flush()
        return channel.id


def _enqueue(
    database: Database, channel_id: int, key: str, recipient: str | None = "alice"
) -> bool:
    with database.session() as session:
        return outbox.enqueue(
            session,
            channel_id=channel_id,
            recipient=recipient,
            event="job.failed",
            idempotency_key=key,
            subject="Job 7 failed",
            body_text="Job 7 failed.",
            payload={"job_id": "7"},
            now=NOW,
        )


def _count(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_enqueue_stores_each_key_once(database: Database) -> None:
    channel = _channel(database)
    assert _enqueue(database, channel, "job-failed:alice:7:c1") is True
    assert _enqueue(database, channel, "job-failed:alice:7:c1") is False
    assert _enqueue(database, channel, "job-failed:alice:8:c1") is True
    assert _count(database) == 2


def test_enqueue_belongs_to_the_callers_transaction(database: Database) -> None:
    channel = _channel(database)
    with pytest.raises(RuntimeError), database.session() as session:
        outbox.enqueue(
            session,
            channel_id=channel,
            recipient="alice",
            event="job.failed",
            idempotency_key="rolled-back",
            subject="s",
            body_text="b",
        )
        raise RuntimeError("the event's transaction fails")
    assert _count(database) == 0
    assert _enqueue(database, channel, "rolled-back") is True


def test_enqueue_refuses_an_oversized_key(database: Database) -> None:
    channel = _channel(database)
    with pytest.raises(InvalidInput):
        _enqueue(database, channel, "k" * 201)


def test_claim_mark_and_fencing_by_token(database: Database) -> None:
    channel = _channel(database)
    _enqueue(database, channel, "a")
    with database.session() as session:
        claimed = outbox.claim(session, 5, NOW, HOLD)
        assert claimed is not None and claimed.state == "sending" and claimed.attempts == 1
        assert claimed.claimed_token == 5
        # in flight: not due again until the claim lapses
        assert outbox.claim(session, 5, NOW, HOLD) is None
    with database.session() as session:
        # a deposed leader (token 4) cannot mark it
        assert outbox.mark_sent(session, claimed.id, 4, NOW) is False
    with database.session() as session:
        # the claim lapsed (its sender died): the next leader takes it again
        again = outbox.claim(session, 6, NOW + HOLD, HOLD)
        assert again is not None and again.id == claimed.id and again.attempts == 2
        assert outbox.mark_sent(session, claimed.id, 5, NOW) is False
        assert outbox.mark_sent(session, claimed.id, 6, NOW + HOLD) is True
    with database.session() as session:
        row = session.get(OutboxMessage, claimed.id)
        assert row is not None and row.state == "sent" and row.sent_at == NOW + HOLD


def test_failure_retries_then_dies_and_resend_requeues(database: Database) -> None:
    channel = _channel(database)
    _enqueue(database, channel, "b")
    with database.session() as session:
        claimed = outbox.claim(session, None, NOW, HOLD)
        assert claimed is not None
        later = NOW + timedelta(seconds=10)
        assert outbox.mark_failed(session, claimed.id, None, error="503", retry_at=later)
        assert outbox.claim(session, None, NOW, HOLD) is None  # not yet due
        again = outbox.claim(session, None, later, HOLD)
        assert again is not None and again.attempts == 2
        assert outbox.mark_failed(session, claimed.id, None, error="503 again", retry_at=None)
    with database.session() as session:
        assert outbox.claim(session, None, NOW + timedelta(days=1), HOLD) is None
        assert outbox.listing(session, state="dead").messages[0].last_error == "503 again"
        outbox.resend(session, claimed.id)
        with pytest.raises(Conflict):
            outbox.resend(session, claimed.id)  # not dead any more
    with database.session() as session:
        row = session.get(OutboxMessage, claimed.id)
        assert row is not None and row.state == "pending" and row.attempts == 0


def test_history_shows_only_the_owners_messages(database: Database) -> None:
    alice_hook = _channel(database, owner="alice")
    site = _channel(database)
    _enqueue(database, alice_hook, "alice-own", recipient="alice")
    _enqueue(database, site, "alice-site", recipient="alice")
    _enqueue(database, site, "bob-site", recipient="bob")
    with database.session() as session:
        alice = {m.idempotency_key for m in outbox.history(session, "alice").messages}
        bob = {m.idempotency_key for m in outbox.history(session, "bob").messages}
        assert alice == {"alice-own", "alice-site"}
        assert bob == {"bob-site"}
        first = outbox.history(session, "alice", limit=1)
        assert first.next_before is not None
        rest = outbox.history(session, "alice", limit=1, before=first.next_before)
        assert rest.messages[0].id < first.messages[0].id and rest.next_before is None


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 5, 10), (2, 10, 20), (3, 20, 40), (8, 50, 100), (30, 50, 100)],
)
def test_backoff_doubles_with_equal_jitter_and_a_cap(attempt: int, low: float, high: float) -> None:
    assert outbox.backoff_seconds(attempt, base=10, cap=100, rand=lambda: 0.0) == low
    assert outbox.backoff_seconds(attempt, base=10, cap=100, rand=lambda: 1.0) == high
