"""Per-user rate limits in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hpcportal.config import Settings
from hpcportal.db.models import RateCounter
from hpcportal.db.session import Database
from hpcportal.errors import RateLimited
from hpcportal.services import rate_limits
from hpcportal.services.identity import Principal

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1001, ("research",), "user")
CAROL = Principal("carol", 1004, 1003, ("hpc-admins",), "admin")
#: 10:00:30 UTC: half a minute into a minute window, and into an hour window.
T0 = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)


def limited(settings: Settings, **values: object) -> Settings:
    base: dict[str, object] = {
        "rate_limit_jobs_per_minute": 2,
        "rate_limit_jobs_per_hour": 3,
        "rate_limit_sessions_per_minute": 1,
        "rate_limit_sessions_per_hour": 0,
    }
    return settings.model_copy(update=base | values)


def counts(database: Database) -> dict[tuple[str, str, int], int]:
    with database.session() as session:
        rows = session.scalars(select(RateCounter)).all()
        return {(r.username, r.action, r.window_seconds): r.count for r in rows}


def test_the_limit_is_reached_and_said_with_retry_after(
    database: Database, db_settings: Settings
) -> None:
    settings = limited(db_settings)
    for _ in range(2):
        rate_limits.count(database, settings, ALICE, "job.submit", T0)
    with pytest.raises(RateLimited) as refused:
        rate_limits.count(database, settings, ALICE, "job.submit", T0)
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "30"}  # the minute ends at 10:01:00
    assert refused.value.message == (
        "Too many job submissions: at most 2 per minute. Try again in 30 s (after 10:01:00 UTC)."
    )
    # The refused request counted nothing, in either window.
    assert counts(database) == {("alice", "job.submit", 60): 2, ("alice", "job.submit", 3600): 2}


def test_the_hourly_limit_outlasts_the_minute(database: Database, db_settings: Settings) -> None:
    settings = limited(db_settings)
    rate_limits.count(database, settings, ALICE, "job.submit", T0)
    rate_limits.count(database, settings, ALICE, "job.submit", T0)
    later = T0 + timedelta(minutes=1)
    rate_limits.count(database, settings, ALICE, "job.submit", later)  # 3 of 3 this hour
    with pytest.raises(RateLimited) as refused:
        rate_limits.count(database, settings, ALICE, "job.submit", later)
    assert "at most 3 per hour" in refused.value.message
    assert refused.value.headers == {"Retry-After": str(60 * 60 - 90)}  # until 11:00:00
    assert "Try again in 58 min 30 s (after 11:00:00 UTC)." in refused.value.message
    # The minute window was not used up by the refusal: one slot of two is left in it.
    assert counts(database)[("alice", "job.submit", 60)] == 1


def test_users_and_actions_are_counted_apart(database: Database, db_settings: Settings) -> None:
    settings = limited(db_settings)
    rate_limits.count(database, settings, ALICE, "session.launch", T0)
    with pytest.raises(RateLimited, match="interactive session launches: at most 1 per minute"):
        rate_limits.count(database, settings, ALICE, "session.launch", T0)
    rate_limits.count(database, settings, BOB, "session.launch", T0)
    rate_limits.count(database, settings, ALICE, "job.submit", T0)


def test_admins_are_limited_unless_exempted(database: Database, db_settings: Settings) -> None:
    settings = limited(db_settings)
    rate_limits.count(database, settings, CAROL, "session.launch", T0)
    with pytest.raises(RateLimited):
        rate_limits.count(database, settings, CAROL, "session.launch", T0)
    exempt = limited(db_settings, rate_limit_exempt_admins=True)
    for _ in range(5):
        rate_limits.count(database, exempt, CAROL, "session.launch", T0)
    with pytest.raises(RateLimited):  # the exemption is for admins only
        rate_limits.count(database, exempt, ALICE, "session.launch", T0 + timedelta(minutes=5))
        rate_limits.count(database, exempt, ALICE, "session.launch", T0 + timedelta(minutes=5))


def test_zero_means_no_limit(database: Database, db_settings: Settings) -> None:
    settings = limited(db_settings, rate_limit_jobs_per_minute=0, rate_limit_jobs_per_hour=0)
    for _ in range(10):
        rate_limits.count(database, settings, ALICE, "job.submit", T0)
    assert counts(database) == {}


def test_replicas_share_the_counters(db_settings: Settings, database: Database) -> None:
    settings = limited(db_settings)
    other = Database(settings)  # a second replica: its own engine on the same database
    try:
        rate_limits.count(database, settings, ALICE, "job.submit", T0)
        rate_limits.count(other, settings, ALICE, "job.submit", T0)
        with pytest.raises(RateLimited):
            rate_limits.count(database, settings, ALICE, "job.submit", T0)
        with pytest.raises(RateLimited):
            rate_limits.count(other, settings, ALICE, "job.submit", T0)
    finally:
        other.dispose()


def test_concurrent_requests_never_exceed_the_limit(
    db_settings: Settings, database: Database
) -> None:
    """Twenty requests at once through four engines: exactly the limit gets through."""
    settings = limited(db_settings, rate_limit_jobs_per_minute=7, rate_limit_jobs_per_hour=0)
    replicas = [Database(settings) for _ in range(4)]
    allowed: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(20)

    def attempt(number: int) -> None:
        start.wait()
        try:
            rate_limits.count(replicas[number % 4], settings, ALICE, "job.submit", T0)
        except RateLimited:
            refused.append(number)
        else:
            allowed.append(number)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.dispose()
    assert len(allowed) == 7 and len(refused) == 13
    assert counts(database) == {("alice", "job.submit", 60): 7}


def test_ended_windows_are_pruned(database: Database, db_settings: Settings) -> None:
    settings = limited(db_settings)
    rate_limits.count(database, settings, ALICE, "job.submit", T0)
    rate_limits.count(database, settings, BOB, "job.submit", T0 + timedelta(hours=2))
    with database.session() as session:
        left = session.scalar(
            select(func.count()).select_from(RateCounter).where(RateCounter.username == "alice")
        )
    assert left == 0  # both of alice's windows ended before bob's new ones began
