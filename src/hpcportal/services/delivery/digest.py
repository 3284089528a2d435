"""The digest builder: held messages folded into one outbox message per channel and period.

Held items (``DeliveryHeld``: digests, quiet hours, over the rate limit) wait until
their ``release_at``. The leader then folds every due item of one (channel,
``period_key``) into one message, in one fenced transaction that also stamps the items
``folded_at``. The message's key is ``digest:<channel>:<period>:<first item id>``:
a function of the rows folded, so a leader that dies after its commit is not repeated
by the next one (the items are folded), and one that dies before it leaves everything
as it was. A lone item goes out as itself (its own subject and text).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import IDEMPOTENCY_KEY_MAX_LENGTH, DeliveryChannel, DeliveryHeld
from hpcportal.db.session import Database
from hpcportal.ha import LeadershipLost
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.delivery import outbox, texts
from hpcportal.services.delivery.sender import Leader

log = logging.getLogger(__name__)
#: At most this many items per folding round (the next round takes the rest).
BATCH = 2000


def digest_key(channel_id: int, period_key: str, first_id: int) -> str:
    key = f"digest:{channel_id}:{period_key}:{first_id}"
    if len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        return key
    return f"digest:{channel_id}:{hashlib.sha256(period_key.encode()).hexdigest()}:{first_id}"


def fold(session: Session, now: datetime) -> int:
    """Fold every due held item into the outbox (caller's transaction); messages made."""
    due = list(
        session.scalars(
            select(DeliveryHeld)
            .where(DeliveryHeld.folded_at.is_(None), DeliveryHeld.release_at <= now)
            .order_by(DeliveryHeld.id)
            .limit(BATCH)
        )
    )
    groups: dict[tuple[int, str], list[DeliveryHeld]] = defaultdict(list)
    for item in due:
        groups[(item.channel_id, item.period_key)].append(item)
    made = 0
    for (channel_id, period_key), items in sorted(groups.items()):
        channel = session.get(DeliveryChannel, channel_id)
        language = channel.language if channel is not None else "en"
        if len(items) == 1:
            subject, body_text = items[0].subject, items[0].body_text
            body_html = texts.digest(language, [(subject, body_text)]).body_html
            event = items[0].event
        else:
            text = texts.digest(language, [(i.subject, i.body_text) for i in items])
            subject, body_text, body_html, event = (
                text.subject,
                text.body_text,
                text.body_html,
                "digest",
            )
        made += int(
            outbox.enqueue(
                session,
                channel_id=channel_id,
                recipient=items[0].recipient,
                event=event,
                idempotency_key=digest_key(channel_id, period_key, items[0].id),
                subject=subject,
                body_text=body_text,
                body_html=body_html,
                payload={
                    "event": event,
                    "period": period_key,
                    "items": [i.payload for i in items],
                },
                now=now,
            )
        )
        session.execute(
            update(DeliveryHeld)
            .where(DeliveryHeld.id.in_([i.id for i in items]), DeliveryHeld.folded_at.is_(None))
            .values(folded_at=now)
            .execution_options(synchronize_session=False)
        )
    return made


class DigestBuilder(PeriodicPart):
    """The background part: fold due held items while this replica leads."""

    loop_name = "delivery-digests"
    failed = "digest round failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        leader: Leader,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.database, self.leader, self.clock = settings, database, leader, clock

    def interval(self) -> float:
        return float(self.settings.delivery_digest_seconds)

    async def tick(self) -> int:
        if not self.leader.is_leader():
            return 0
        try:
            return await run_in_threadpool(self.fold_now)
        except LeadershipLost:
            return 0

    def fold_now(self) -> int:
        with self.database.session() as session:
            self.leader.fence(session)
            return fold(session, self.clock())
