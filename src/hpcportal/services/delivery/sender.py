"""The leader's sender: takes due messages from the outbox, one at a time, and sends them.

Every replica runs the loop; only the leader sends (``is_leader``), and each of its
writes is fenced (``Leadership.fence`` first in the transaction), so a leader that lost
its lease can neither claim a message nor mark one:

1. *claim*, committed before anything leaves: the oldest due message becomes
   ``sending`` with the leader's fencing token, its attempt counted, its claim valid
   for ``claim_hold`` (six send timeouts: longer than any one send can take);
2. *send* through its channel (``channels``);
3. *mark*, fenced: ``sent``; or due again after an exponential, jittered backoff; or
   ``dead`` after ``delivery_max_attempts`` or a failure that cannot heal (a refused
   address, a URL outside the allow list, a disabled channel).

Why exactly once, and the one exception: a message is sent only after a committed
claim, and marked ``sent`` by the claimant only; a deposed leader's claim or mark is
refused by the fence. What a crash or a takeover leaves is at most the one message in
flight (the sender never holds more than one): claimed, perhaps delivered, not marked.
The next leader sends it again once its claim lapses, with the same Message-ID and
``X-Hpcportal-Delivery`` id, which receivers use to drop the repeat. No protocol can
do better without the receiver's help: the answer to the first send may have been lost.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Counter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryChannel
from hpcportal.db.session import Database
from hpcportal.ha import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.delivery import outbox
from hpcportal.services.delivery.channels import (
    Channels,
    DeliveryFailed,
    Destination,
    Outgoing,
    destination,
)
from hpcportal.services.secret_box import SecretUnreadable

log = logging.getLogger(__name__)

#: The one event an unverified user channel receives: its confirmation code
#: (``user_channels.VERIFY_EVENT``); everything else waits for the confirmation.
VERIFICATION_EVENT = "channel_verification"

MESSAGES = Counter(
    "hpcportal_delivery_messages",
    "Outbox send attempts by outcome (sent, retry, dead, lost_lease)",
    ["outcome"],
)


class Leader(Protocol):
    """What the sender asks of ``ha.leadership.Leadership``."""

    def is_leader(self) -> bool: ...

    def current_token(self) -> int | None: ...

    def fence(self, session: Session) -> None: ...


class Sends(Protocol):
    """What the sender asks of ``channels.Channels``: deliver or raise ``DeliveryFailed``."""

    async def send(self, to: Destination, message: Outgoing) -> None: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message this sender holds: where to, what, or why it cannot go at all."""

    outbox_id: int
    attempts: int
    message: Outgoing
    to: Destination | None
    refused: str | None = None


class DeliverySender(PeriodicPart):
    """The background part: send due outbox messages while this replica leads."""

    loop_name = "delivery-sender"
    failed = "delivery round failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        leader: Leader,
        channels: Sends | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.database = database
        self.leader = leader
        self.channels: Sends = channels or Channels(settings)
        self.clock = clock
        self.rand = rand
        #: The message being sent now (at most one), for the admin page.
        self.in_flight: int | None = None

    def interval(self) -> float:
        return self.settings.delivery_poll_seconds

    @property
    def claim_hold(self) -> timedelta:
        """How long a claim stands: connect, TLS, login and send, each with the timeout."""
        return timedelta(seconds=6 * self.settings.delivery_send_timeout_seconds)

    async def tick(self) -> int:
        """Send every due message, one after the other, while leading; how many."""
        handled = 0
        while self.leader.is_leader() and await self.send_one():
            handled += 1
        return handled

    async def send_one(self) -> bool:
        """Claim, send and mark the oldest due message; False when there was none."""
        token = self.leader.current_token()
        try:
            claimed = await run_in_threadpool(self._claim, token, self.clock())
        except LeadershipLost:
            MESSAGES.labels("lost_lease").inc()
            return False
        if claimed is None:
            return False
        self.in_flight = claimed.outbox_id
        try:
            error, permanent = await self._send(claimed)
        finally:
            self.in_flight = None
        try:
            outcome = await run_in_threadpool(self._finish, claimed, token, error, permanent)
        except LeadershipLost:
            # Left ``sending`` under our token: the next leader sends it again, same id.
            log.warning("lost the lease while sending outbox message %d", claimed.outbox_id)
            MESSAGES.labels("lost_lease").inc()
            return False
        MESSAGES.labels(outcome).inc()
        return True

    async def _send(self, claimed: Claimed) -> tuple[str | None, bool]:
        if claimed.to is None:
            return claimed.refused or "cannot be sent", True
        try:
            await self.channels.send(claimed.to, claimed.message)
        except DeliveryFailed as exc:
            log.info("outbox message %d not delivered: %s", claimed.outbox_id, exc)
            return str(exc), exc.permanent
        except Exception as exc:  # a bug must not stop the queue: retry, then dead
            log.exception("outbox message %d: sender failed", claimed.outbox_id)
            return f"{type(exc).__name__}: {exc}"[:500], False
        return None, False

    def _claim(self, token: int | None, now: datetime) -> Claimed | None:
        with self.database.session() as session:
            self.leader.fence(session)
            row = outbox.claim(session, token, now, self.claim_hold)
            if row is None:
                return None
            message = Outgoing.of(row)
            channel = session.get(DeliveryChannel, row.channel_id)
            refused = _unusable(channel, row.event)
            to = None
            if refused is None and channel is not None:
                try:
                    to = destination(self.settings, channel)
                except SecretUnreadable as exc:
                    refused = f"the channel's secret cannot be opened: {exc}"
            return Claimed(row.id, row.attempts, message, to, refused)

    def _finish(
        self, claimed: Claimed, token: int | None, error: str | None, permanent: bool
    ) -> str:
        now = self.clock()
        with self.database.session() as session:
            self.leader.fence(session)
            if error is None:
                outbox.mark_sent(session, claimed.outbox_id, token, now)
                return "sent"
            retry_at = self.retry_at(claimed.attempts, now, permanent)
            outbox.mark_failed(session, claimed.outbox_id, token, error=error, retry_at=retry_at)
            return "dead" if retry_at is None else "retry"

    def retry_at(self, attempts: int, now: datetime, permanent: bool = False) -> datetime | None:
        """When to try again after ``attempts`` failed ones; None: it is a dead letter."""
        if permanent or attempts >= self.settings.delivery_max_attempts:
            return None
        delay = outbox.backoff_seconds(
            attempts,
            base=self.settings.delivery_base_delay_seconds,
            cap=self.settings.delivery_max_delay_seconds,
            rand=self.rand,
        )
        return now + timedelta(seconds=delay)


def _unusable(channel: DeliveryChannel | None, event: str) -> str | None:
    """Why a message cannot go through ``channel`` at all (None: it can). An unverified
    user channel gets its confirmation code and nothing else."""
    if channel is None:
        return "the channel was deleted"
    if not channel.enabled:
        return "the channel is disabled"
    if channel.owner is not None and channel.verified_at is None and event != VERIFICATION_EVENT:
        return "the channel is not verified"
    return None
