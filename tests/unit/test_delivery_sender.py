"""The leader's sender on SQLite, PostgreSQL and MariaDB, with two replicas' real
``Leadership`` objects on one database: only the leader sends; a deposed leader can
neither claim nor mark; the message in flight when leadership moves is sent again by
the new leader with the same delivery id (the one ambiguity receivers dedupe); failures
back off and end dead; a disabled or unverified channel's message dies unsent.

The receiving end is a stand-in for an outside peer (``RecordingPeer``): the real
protocols are exercised by tests/integration/test_delivery.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from hpcportal.db.session import Database
from hpcportal.ha import Leadership
from hpcportal.services.delivery import outbox
from hpcportal.services.delivery.channels import DeliveryFailed, Destination, Outgoing
from hpcportal.services.delivery.sender import DeliverySender
from hpcportal.services.delivery.signature import delivery_id

START = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class RecordingPeer:
    """Stand-in for a receiver: records what arrives, fails while ``failing``, and runs
    ``during`` inside a send (to move leadership while a message is in flight)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.failing: DeliveryFailed | None = None
        self.during: Callable[[], object] | None = None

    async def send(self, to: Destination, message: Outgoing) -> None:
        if self.during is not None:
            during, self.during = self.during, None
            result = during()
            if asyncio.iscoroutine(result):
                await result
        if self.failing is not None:
            raise self.failing
        self.received.append(message.delivery_id)


def channel(database: Database, *, owner: str | None = None, enabled: bool = True,
            verified: bool = True) -> int:  # fmt: skip
    with database.session() as session:
        row = DeliveryChannel(owner=owner, kind="webhook", name="h",
                              target="https://hooks.example.org/x", language="en",
                              verified_at=START if verified else None, enabled=enabled,
                              created_at=START)  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def enqueue(database: Database, channel_id: int, key: str, event: str = "e") -> None:
    with database.session() as session:
        outbox.enqueue(session, channel_id=channel_id, recipient=None, event=event,
                       idempotency_key=key, subject="s", body_text="b", now=START)  # fmt: skip


def state(database: Database, key: str) -> OutboxMessage:
    with database.session() as session:
        row = session.query(OutboxMessage).filter_by(idempotency_key=key).one()
        session.expunge(row)
        return row


def test_only_the_leader_sends_and_a_deposed_leader_cannot_claim(
    database: Database, db_settings: Settings
) -> None:
    clock = Clock(START)
    hook = channel(database)
    enqueue(database, hook, "a")
    peer_one, peer_two = RecordingPeer(), RecordingPeer()

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = DeliverySender(db_settings, database, first, peer_one, clock=clock)
        two = DeliverySender(db_settings, database, second, peer_two, clock=clock)
        try:
            await first.start()
            await second.start()
            assert await two.tick() == 0  # a follower sends nothing
            assert await one.tick() == 1
            enqueue(database, hook, "b")
            token = first._token
            await first.stop()  # its lease ends and the second replica takes over
            await second.tick()
            assert second.is_leader()
            first._token, first._valid_until = token, float("inf")  # paused, unaware
            assert await one.send_one() is False  # the fence refuses its claim
            assert await two.tick() == 1
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert peer_one.received == [delivery_id("a")]
    assert peer_two.received == [delivery_id("b")]
    assert state(database, "b").state == "sent"


def test_the_message_in_flight_at_a_takeover_goes_again_with_the_same_id(
    database: Database, db_settings: Settings
) -> None:
    clock = Clock(START)
    hook = channel(database)
    enqueue(database, hook, "in-flight")
    peer = RecordingPeer()

    async def scenario() -> None:
        first = Leadership(database, replica_id="r1", lease_seconds=30)
        second = Leadership(database, replica_id="r2", lease_seconds=30)
        one = DeliverySender(db_settings, database, first, peer, clock=clock)
        two = DeliverySender(db_settings, database, second, peer, clock=clock)
        try:
            await first.start()
            await second.start()

            async def takeover() -> None:
                token = first._token
                await first.stop()
                first._token, first._valid_until = token, float("inf")  # paused, unaware
                await second.tick()
                assert second.is_leader()

            peer.during = takeover
            assert await one.send_one() is False  # sent, but its mark is fenced off
            row = state(database, "in-flight")
            assert row.state == "sending" and row.claimed_token == first._token
            assert await two.tick() == 0  # the claim has not lapsed yet
            clock.now += one.claim_hold
            assert await two.tick() == 1
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert peer.received == [delivery_id("in-flight")] * 2  # once per leader, same id
    row = state(database, "in-flight")
    assert row.state == "sent" and row.attempts == 2


def test_failures_back_off_then_die(database: Database, db_settings: Settings) -> None:
    settings = db_settings.model_copy(
        update={
            "delivery_max_attempts": 3,
            "delivery_base_delay_seconds": 10.0,
            "delivery_max_delay_seconds": 1000.0,
        }
    )
    clock = Clock(START)
    hook = channel(database)
    enqueue(database, hook, "f")
    peer = RecordingPeer()
    peer.failing = DeliveryFailed("HTTP 503")
    sender = DeliverySender(settings, database, Leadership.single(), peer, clock=clock,
                            rand=lambda: 1.0)  # fmt: skip

    async def scenario() -> list[datetime]:
        due = []
        for _ in range(3):
            assert await sender.tick() == 1
            assert await sender.tick() == 0  # not due again yet
            row = state(database, "f")
            due.append(row.next_attempt_at)
            clock.now = row.next_attempt_at
        return due

    due = asyncio.run(scenario())
    assert due[0] == START + timedelta(seconds=10)
    assert due[1] == due[0] + timedelta(seconds=20)
    row = state(database, "f")
    assert row.state == "dead" and row.attempts == 3 and row.last_error == "HTTP 503"
    assert peer.received == []


def test_a_permanent_failure_dies_at_once(database: Database, db_settings: Settings) -> None:
    hook = channel(database)
    enqueue(database, hook, "p")
    peer = RecordingPeer()
    peer.failing = DeliveryFailed("URL refused: private", permanent=True)
    sender = DeliverySender(db_settings, database, Leadership.single(), peer)
    assert asyncio.run(sender.tick()) == 1
    row = state(database, "p")
    assert row.state == "dead" and row.attempts == 1


def test_disabled_or_unverified_channels_get_nothing_but_the_code(
    database: Database, db_settings: Settings
) -> None:
    disabled = channel(database, enabled=False)
    unverified = channel(database, owner="alice", verified=False)
    enqueue(database, disabled, "d")
    enqueue(database, unverified, "u")
    enqueue(database, unverified, "code", event="channel_verification")
    peer = RecordingPeer()
    sender = DeliverySender(db_settings, database, Leadership.single(), peer)
    assert asyncio.run(sender.tick()) == 3
    assert peer.received == [delivery_id("code")]  # only the confirmation code goes
    assert state(database, "code").state == "sent"
    assert state(database, "d").last_error == "the channel is disabled"
    assert state(database, "u").last_error == "the channel is not verified"
    assert state(database, "d").state == state(database, "u").state == "dead"
