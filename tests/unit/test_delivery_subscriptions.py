"""A person's channels and subscriptions (issue 15.2): the rules (quiet hours across
midnight and time zones, digest periods, the rate limit) as pure functions, and on
SQLite, PostgreSQL and MariaDB: verification, routing into the outbox once per event
and channel, digest folding with deterministic keys, and owners kept apart."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryHeld, DeliverySubscription, OutboxMessage
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, InvalidInput, NotFound, RateLimited
from hpcportal.services.delivery import digest, routing, subscriptions, user_channels
from hpcportal.services.delivery.subscriptions import (
    SubscriptionIn,
    decide,
    period,
    quiet_until,
)
from hpcportal.services.delivery.url_guard import UrlGuard
from hpcportal.services.delivery.user_channels import UserChannelIn
from hpcportal.services.identity import Principal
from hpcportal.services.notifications import NotificationDetector
from hpcportal.services.notifications.detector import insert_new, new_row
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import parse
from hpcportal.slurm.states import JobStatus
from tests.unit.slurm_fixtures import recorded

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SETTINGS = Settings(jwt_secret=SecretStr("x" * 40))
ALICE = Principal("alice", 1001, 1001, ("physics",), "user")
BOB = Principal("bob", 1002, 1002, ("physics",), "user")
CAROL = Principal("carol", 1003, 1003, ("admins",), "admin")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- Quiet hours -------------------------------------------------------------------------


def test_quiet_hours_within_one_day() -> None:
    assert quiet_until(_at("2026-12-03T12:30+00:00"), "12:00", "14:00", "UTC") == _at(
        "2026-12-03T14:00+00:00"
    )
    assert quiet_until(_at("2026-12-03T14:00+00:00"), "12:00", "14:00", "UTC") is None
    assert quiet_until(_at("2026-12-03T11:59+00:00"), "12:00", "14:00", "UTC") is None


def test_quiet_hours_across_midnight_end_the_next_morning() -> None:
    # 23:30 local: quiet until 07:00 tomorrow; 03:00 local: until 07:00 today.
    assert quiet_until(_at("2026-12-03T23:30+00:00"), "22:00", "07:00", "UTC") == _at(
        "2026-12-04T07:00+00:00"
    )
    assert quiet_until(_at("2026-12-04T03:00+00:00"), "22:00", "07:00", "UTC") == _at(
        "2026-12-04T07:00+00:00"
    )
    assert quiet_until(_at("2026-12-04T07:00+00:00"), "22:00", "07:00", "UTC") is None
    assert quiet_until(_at("2026-12-03T21:59+00:00"), "22:00", "07:00", "UTC") is None


def test_quiet_hours_are_the_owners_local_time() -> None:
    # 14:00 UTC is 23:00 in Seoul: quiet there (22-07) until 07:00 KST = 22:00 UTC.
    assert quiet_until(_at("2026-12-03T14:00+00:00"), "22:00", "07:00", "Asia/Seoul") == _at(
        "2026-12-03T22:00+00:00"
    )
    # The same instant is 14:00 in London: not quiet.
    assert quiet_until(_at("2026-12-03T14:00+00:00"), "22:00", "07:00", "Europe/London") is None


def test_quiet_hours_end_at_local_time_across_a_dst_change() -> None:
    # New York falls back on 2026-11-01: 07:00 EST that morning is 12:00 UTC.
    assert quiet_until(_at("2026-11-01T03:00+00:00"), "22:00", "07:00", "America/New_York") == _at(
        "2026-11-01T12:00+00:00"
    )


def test_no_quiet_hours_when_unset_or_equal() -> None:
    assert quiet_until(NOW, None, None, "UTC") is None
    assert quiet_until(NOW, "10:00", "10:00", "UTC") is None


def test_bad_quiet_hours_and_zones_are_refused() -> None:
    with pytest.raises(ValidationError):
        SubscriptionIn(event="job_failed", channel_id=1, quiet_start="25:00", quiet_end="07:00")
    with pytest.raises(ValidationError):
        SubscriptionIn(event="job_failed", channel_id=1, quiet_start="22:00")
    with pytest.raises(ValidationError):
        SubscriptionIn(event="job_failed", channel_id=1, time_zone="Mars/Olympus")


# --- Periods and decisions ---------------------------------------------------------------


def test_periods_hourly_utc_and_daily_local() -> None:
    assert period("hourly", _at("2026-12-03T10:59+00:00"), "Asia/Seoul") == (
        "hourly:2026-12-03T10Z",
        _at("2026-12-03T11:00+00:00"),
    )
    # 16:00 UTC is already 4 December in Seoul; its day ends at 15:00 UTC on the 4th.
    assert period("daily", _at("2026-12-03T16:00+00:00"), "Asia/Seoul") == (
        "daily:2026-12-04@Asia/Seoul",
        _at("2026-12-04T15:00+00:00"),
    )


def _sub(**kw: Any) -> DeliverySubscription:
    base: dict[str, Any] = dict(
        owner="alice", channel_id=1, event="job_failed", mode="immediate",
        quiet_start=None, quiet_end=None, time_zone="UTC",
    )  # fmt: skip
    base.update(kw)
    return DeliverySubscription(**base)


def test_decide_immediate_digest_quiet_and_rate() -> None:
    assert decide(_sub(), NOW, sent_last_hour=0, limit=None) is None
    hold = decide(_sub(mode="hourly"), NOW, sent_last_hour=0, limit=None)
    assert hold is not None and (hold.reason, hold.release_at) == (
        "digest",
        NOW + timedelta(hours=1),
    )
    quiet = decide(_sub(quiet_start="09:00", quiet_end="11:30"), NOW, sent_last_hour=0, limit=None)
    assert quiet is not None and quiet.reason == "quiet"
    assert quiet.release_at == _at("2026-12-03T11:30+00:00")
    assert decide(_sub(), NOW, sent_last_hour=2, limit=3) is None
    rate = decide(_sub(), NOW, sent_last_hour=3, limit=3)
    assert rate is not None and (rate.reason, rate.period_key) == ("rate", "hourly:2026-12-03T10Z")


def test_a_digest_ending_in_quiet_hours_waits_for_their_end() -> None:
    hold = decide(_sub(mode="hourly", quiet_start="10:30", quiet_end="12:00"), NOW,
                  sent_last_hour=0, limit=None)  # fmt: skip
    assert hold is not None and hold.release_at == _at("2026-12-03T12:00+00:00")


def test_message_keys_stay_within_the_column() -> None:
    assert routing.message_key("job:alice:7:failed", 3) == "job:alice:7:failed:ch3"
    long = routing.message_key("disk:alice:" + "/x" * 200 + ":1:disk_warning", 12)
    assert len(long) <= 200 and long.endswith(":ch12")
    assert long == routing.message_key("disk:alice:" + "/x" * 200 + ":1:disk_warning", 12)


# --- With a database ---------------------------------------------------------------------


def _verified_channel(
    database: Database, who: Principal, *, language: str = "en", limit: int | None = None
) -> int:
    """A channel added, its code read from the outbox, and confirmed."""
    with database.session() as session:
        created = user_channels.add_channel(
            session, SETTINGS, UrlGuard.from_settings(SETTINGS), who.username,
            UserChannelIn(kind="email", name="mail", target=f"{who.username}@example.org",
                          language=language, rate_limit_per_hour=limit),
            )  # fmt: skip
        channel_id = created.channel.id
    code = _code(database, channel_id)
    with database.session() as session:
        row, refused = user_channels.verify(session, who.username, channel_id, code)
        assert refused is None and row.verified_at is not None
    return channel_id


def _code(database: Database, channel_id: int) -> str:
    with database.session() as session:
        body = session.scalars(
            select(OutboxMessage.body_text)
            .where(
                OutboxMessage.channel_id == channel_id,
                OutboxMessage.event == "channel_verification",
            )
            .order_by(OutboxMessage.id.desc())
        ).first()
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None
    return found.group(1)


def _subscribe(database: Database, who: Principal, channel_id: int, event: str = "job_failed",
               **kw: Any) -> None:  # fmt: skip
    with database.session() as session:
        subscriptions.add_subscription(
            session, who, SubscriptionIn(event=event, channel_id=channel_id, **kw)
        )


def _fail_job(database: Database, user: str, job_id: str) -> None:
    """A job-failed bell notification stored the way the detector stores it."""
    with database.session() as session:
        row = new_row(user, "job", "failed", "Job failed", f'Job "sim" ({job_id}) failed.',
                      {"job_id": job_id, "job_name": "sim", "state": "FAILED", "exit_code": 1},
                      NOW, job_id=job_id)  # fmt: skip
        insert_new(session, [row], ["username", "job_id", "event"])


def _messages(database: Database, channel_id: int, event: str | None = None) -> list[OutboxMessage]:
    with database.session() as session:
        query = select(OutboxMessage).where(OutboxMessage.channel_id == channel_id)
        if event is not None:
            query = query.where(OutboxMessage.event == event)
        rows = list(session.scalars(query.order_by(OutboxMessage.id)))
        session.expunge_all()
        return rows


def test_verification_code_attempts_and_expiry(database: Database) -> None:
    with database.session() as session:
        created = user_channels.add_channel(
            session, SETTINGS, UrlGuard.from_settings(SETTINGS), "alice",
            UserChannelIn(kind="email", name="mail", target="alice@example.org"),
        )  # fmt: skip
        channel_id = created.channel.id
    code = _code(database, channel_id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(user_channels.VERIFY_ATTEMPTS):
        with database.session() as session:
            _, refused = user_channels.verify(session, "alice", channel_id, wrong)
            assert refused is not None
    with database.session() as session:  # the right code no longer helps
        row, refused = user_channels.verify(session, "alice", channel_id, code)
        assert refused == "too many wrong codes; ask for a new one" and row.verified_at is None
        with pytest.raises(NotFound):
            user_channels.verify(session, "bob", channel_id, code)
    with database.session() as session:  # expired after VERIFY_MINUTES
        late = datetime.now(UTC) + timedelta(minutes=user_channels.VERIFY_MINUTES + 1)
        _, refused = user_channels.verify(session, "alice", channel_id, code, now=late)
        assert refused is not None and "expired" in refused


def test_unverified_channels_get_nothing_but_their_code(database: Database) -> None:
    with database.session() as session:
        created = user_channels.add_channel(
            session, SETTINGS, UrlGuard.from_settings(SETTINGS), "alice",
            UserChannelIn(kind="email", name="mail", target="alice@example.org"),
        )  # fmt: skip
    channel_id = created.channel.id
    _subscribe(database, ALICE, channel_id)
    with database.session() as session, pytest.raises(Conflict):
        user_channels.test_channel(session, "alice", channel_id)
    _fail_job(database, "alice", "41")
    assert [m.event for m in _messages(database, channel_id)] == ["channel_verification"]


def test_a_failed_job_is_routed_once_per_channel_in_the_channels_language(
    database: Database,
) -> None:
    english = _verified_channel(database, ALICE)
    korean = _verified_channel(database, ALICE, language="ko")
    _subscribe(database, ALICE, english)
    _subscribe(database, ALICE, korean)
    _fail_job(database, "alice", "42")
    _fail_job(database, "alice", "42")  # a second replica stores nothing, routes nothing
    with database.session() as session:  # routing the same event again adds nothing
        again = routing.route(session, username="alice", event="job_failed",
                              params={"job_id": "42", "job_name": "sim"},
                              key="job:alice:42:failed", now=NOW)  # fmt: skip
        assert again == 0
    [en] = _messages(database, english, "job_failed")
    [ko] = _messages(database, korean, "job_failed")
    assert en.idempotency_key == f"job:alice:42:failed:ch{english}"
    assert "Job failed" in en.subject and "failed" in en.body_text
    assert en.body_html is not None and "<p>" in en.body_html
    assert "작업 실패" in ko.subject and "실패했습니다" in ko.body_text


def test_only_subscribed_events_of_the_owner_are_routed(database: Database) -> None:
    alice = _verified_channel(database, ALICE)
    bob = _verified_channel(database, BOB)
    _subscribe(database, ALICE, alice, "job_finished")
    _fail_job(database, "alice", "43")  # alice subscribed finished, not failed
    _subscribe(database, BOB, bob)
    assert _messages(database, alice, "job_failed") == []
    assert _messages(database, bob, "job_failed") == []  # alice's failure is not bob's


def test_owners_are_kept_apart(database: Database) -> None:
    alice = _verified_channel(database, ALICE)
    _subscribe(database, ALICE, alice)
    with database.session() as session:
        with pytest.raises(NotFound):
            user_channels.own_channel(session, "bob", alice)
        with pytest.raises(NotFound):  # bob cannot subscribe alice's channel
            subscriptions.add_subscription(
                session, BOB, SubscriptionIn(event="job_failed", channel_id=alice)
            )
        [sub] = subscriptions.list_subscriptions(session, "alice")
        with pytest.raises(NotFound):
            subscriptions.remove_subscription(session, "bob", sub.id)
        assert user_channels.list_channels(session, "bob") == []
        assert user_channels.history(session, "bob").items == []
        assert [i.event for i in user_channels.history(session, "alice").items] == [
            "channel_verification"
        ]


def test_admin_alerts_are_for_admins_only(database: Database) -> None:
    alice = _verified_channel(database, ALICE)
    carol = _verified_channel(database, CAROL)
    with pytest.raises(InvalidInput):
        _subscribe(database, ALICE, alice, "admin_alert")
    _subscribe(database, CAROL, carol, "admin_alert")


def test_webhook_urls_outside_the_allow_list_are_refused(database: Database) -> None:
    with database.session() as session:
        for url in ("http://127.0.0.1:9/hook", "https://10.1.2.3/hook", "https://169.254.169.254/"):
            with pytest.raises(InvalidInput, match="not allowed"):
                user_channels.add_channel(
                    session, SETTINGS, UrlGuard.from_settings(SETTINGS), "alice",
                    UserChannelIn(kind="webhook", name="hook", target=url),
                )  # fmt: skip


def test_rate_limit_folds_the_rest_into_the_next_digest(database: Database) -> None:
    channel = _verified_channel(database, ALICE, limit=2)
    _subscribe(database, ALICE, channel)
    # The verification code counts in the past hour: one more goes out at once.
    for job in ("50", "51", "52"):
        _fail_job(database, "alice", job)
    assert len(_messages(database, channel, "job_failed")) == 1
    with database.session() as session:
        held = list(session.scalars(select(DeliveryHeld).order_by(DeliveryHeld.id)))
        assert [h.reason for h in held] == ["rate", "rate"]
        assert digest.fold(session, NOW) == 0  # not before the hour ends
    with database.session() as session:
        assert digest.fold(session, NOW + timedelta(hours=1)) == 1
    with database.session() as session:
        assert digest.fold(session, NOW + timedelta(hours=2)) == 0  # folded once
    [folded] = _messages(database, channel, "digest")
    assert "2 notifications" in folded.subject
    assert folded.idempotency_key.startswith(f"digest:{channel}:hourly:2026-12-03T10Z:")


def test_hourly_digest_holds_then_folds_with_a_deterministic_key(database: Database) -> None:
    channel = _verified_channel(database, ALICE)
    _subscribe(database, ALICE, channel, mode="hourly")
    for job in ("60", "61", "62"):
        _fail_job(database, "alice", job)
    assert _messages(database, channel, "job_failed") == []
    with database.session() as session:
        ids = sorted(session.scalars(select(DeliveryHeld.id)))
        made = digest.fold(session, NOW + timedelta(hours=1))
        session.rollback()  # a leader that died before its commit: nothing happened
    assert made == 1 and _messages(database, channel, "digest") == []
    with database.session() as session:
        assert digest.fold(session, NOW + timedelta(hours=1)) == 1
    [folded] = _messages(database, channel, "digest")
    assert folded.idempotency_key == f"digest:{channel}:hourly:2026-12-03T10Z:{ids[0]}"
    assert folded.body_text.count("Job failed") == 3
    with database.session() as session:
        open_items = session.scalar(
            select(func.count()).select_from(DeliveryHeld).where(DeliveryHeld.folded_at.is_(None))
        )
        assert open_items == 0


def test_quiet_hours_hold_and_release_a_lone_message_as_itself(database: Database) -> None:
    channel = _verified_channel(database, ALICE)
    _subscribe(database, ALICE, channel, quiet_start="09:00", quiet_end="11:00")
    _fail_job(database, "alice", "70")
    assert _messages(database, channel, "job_failed") == []
    with database.session() as session:
        assert digest.fold(session, _at("2026-12-03T10:59+00:00")) == 0
    with database.session() as session:
        assert digest.fold(session, _at("2026-12-03T11:00+00:00")) == 1
    [released] = _messages(database, channel, "job_failed")
    assert "Job failed" in released.subject


def test_the_detector_routes_job_events_even_when_the_bell_is_off_for_them(
    database: Database,
) -> None:
    """dave's "started" is off for the bell (the default) but subscribed by email: the
    detector stores no bell row and still routes the event, once across two replicas."""
    channel = _verified_channel(database, Principal("dave", 1004, 1004, ("physics",), "user"))
    with database.session() as session:
        subscriptions.add_subscription(
            session,
            Principal("dave", 1004, 1004, ("physics",), "user"),
            SubscriptionIn(event="job_started", channel_id=channel),
        )
    replicas = [_detector(database), _detector(database)]
    for replica in replicas:
        replica.process(_snap(1, {}))
    running = _snap(2, {"state": "RUNNING", "status": JobStatus.RUNNING, "batch_host": "node002"})
    assert [r.process(running) for r in replicas] == [[], []]  # no bell notification
    [started] = _messages(database, channel, "job_started")
    assert started.idempotency_key == f"job:dave:3:started:ch{channel}"


def _snap(generation: int, job_3: dict[str, Any]) -> ClusterSnapshot:
    """The recorded queue (``slurm_fixtures``) with dave's job 3 changed."""
    jobs = [
        j.model_copy(update=job_3) if j.id == "3" and job_3 else j
        for j in parse.parse_squeue(recorded("squeue.json"))
    ]
    nodes = parse.parse_sinfo(recorded("sinfo.json"))
    partitions = parse.parse_partitions(recorded("scontrol_partitions.txt"))
    return ClusterSnapshot.build(generation, 0.0, jobs, nodes, partitions)


class _NoAccounting:
    def accounting(self, *_: Any, **__: Any) -> list[Any]:
        return []


def _detector(database: Database) -> NotificationDetector:
    url = database.engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, jwt_secret=SecretStr("x" * 40))
    return NotificationDetector(database, _NoAccounting(), settings, clock=lambda: NOW)


def test_confirmation_codes_are_limited_per_person_and_hour(database: Database) -> None:
    with database.session() as session:
        guard = UrlGuard.from_settings(SETTINGS)
        for n in range(user_channels.CODES_PER_HOUR):
            user_channels.add_channel(session, SETTINGS, guard, "alice",
                                      UserChannelIn(kind="email", name=f"m{n}",
                                                    target=f"x{n}@example.org"))  # fmt: skip
        with pytest.raises(RateLimited):
            user_channels.add_channel(session, SETTINGS, guard, "alice",
                                      UserChannelIn(kind="email", name="one more",
                                                    target="y@example.org"))  # fmt: skip
        # Somebody else is not affected.
        bob = UserChannelIn(kind="email", name="b", target="b@example.org")
        user_channels.add_channel(session, SETTINGS, guard, "bob", bob)
