"""Kill the leader while 100 messages are queued (issue 15): three replicas behind HAProxy
on PostgreSQL and Redis (``replica_group``) send to a webhook test peer that verifies
each signature and counts messages by delivery id, answering slowly so the leader is
killed (``kill -9``) with a message in flight.

Every message arrives; each delivery id exactly once, except at most the one message
in flight at the kill, which may arrive twice with the same id (the receiver drops the
repeat by that id). The bound is asserted: at most one id twice, none more often.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import OutboxMessage
from hpcportal.db.session import Database
from hpcportal.services.delivery import outbox
from hpcportal.services.delivery.signature import delivery_id
from tests.integration.delivery_peers import WebhookTestPeer
from tests.integration.replica_group import replica_group

pytestmark = pytest.mark.postgres

MESSAGES = 100
KILL_AFTER = 30
ENV = {
    "HPCPORTAL_DELIVERY_POLL_SECONDS": "0.2",
    "HPCPORTAL_DELIVERY_ALLOWED_SCHEMES": '["http"]',
    "HPCPORTAL_DELIVERY_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
    # A claim stands 6 send timeouts (12 s): the in-flight message waits that long.
    "HPCPORTAL_DELIVERY_SEND_TIMEOUT_SECONDS": "2",
    "HPCPORTAL_DELIVERY_BASE_DELAY_SECONDS": "0.2",
    "HPCPORTAL_DELIVERY_MAX_DELAY_SECONDS": "1",
    "HPCPORTAL_LEADER_LEASE_SECONDS": "3",
}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_killing_the_leader_with_100_queued_messages_delivers_each_once(
    conf: str, devcluster: dict[str, Any], tmp_path: Path
) -> None:
    receiver = WebhookTestPeer(secret="set below", delay=0.1).start()
    try:
        with replica_group(tmp_path, conf, count=3, extra=ENV) as group:
            first = group.leader()
            assert first is not None
            carol = {"Authorization": f"Bearer {group.login('carol')}"}
            created = httpx.post(
                f"{group.url}/api/v1/admin/delivery/channels",
                json={"kind": "webhook", "name": "kill test", "target": receiver.url},
                headers=carol,
                timeout=30,
            )
            assert created.status_code == 201, created.text
            receiver.secret = created.json()["secret"]
            channel = int(created.json()["channel"]["id"])

            database = Database(Settings(database_url=group.database_url))
            try:
                run = secrets.token_hex(4)
                keys = [f"kill-{run}-{n}" for n in range(MESSAGES)]
                with database.session() as session:  # one transaction, as a producer's
                    for n, key in enumerate(keys):
                        assert outbox.enqueue(
                            session,
                            channel_id=channel,
                            recipient=None,
                            event="test.kill",
                            idempotency_key=key,
                            subject=f"message {n}",
                            body_text=f"message {n} of {MESSAGES}",
                        )

                wait_until(lambda: len(receiver.counts()) >= KILL_AFTER, 60, "the first messages")
                first.kill()  # kill -9, most likely while it waits on a slow answer
                killed_at = time.monotonic()
                wait_until(lambda: group.leader() not in (None, first), 30, "a new leader")
                assert time.monotonic() - killed_at < 15

                def all_sent() -> bool:
                    with database.session() as session:
                        query = select(func.count()).where(OutboxMessage.state != "sent")
                        return session.scalar(query.select_from(OutboxMessage)) == 0

                wait_until(all_sent, 120, "every message marked sent")
            finally:
                database.dispose()

        counts = receiver.counts()
        expected = {delivery_id(key) for key in keys}
        assert receiver.rejected == []
        assert set(counts) == expected  # every message delivered
        repeated = {d: c for d, c in counts.items() if c > 1}
        # Only the one message in flight at the kill may arrive twice, with its id.
        assert len(repeated) <= 1 and all(c == 2 for c in repeated.values()), repeated
        assert sum(counts.values()) <= MESSAGES + 1
    finally:
        receiver.stop()
