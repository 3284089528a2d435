"""Per-user rate limits on job submissions and session launches, through a real portal
on the live dev cluster (real sbatch as the demo users)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from hpcportal.db.models import AuditEntry, RateCounter
from tests.integration.apps_fixture import write_broken_app
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

#: A job that ends at once, in the default partition: the shared cluster stays free.
TINY = {"script": "#!/bin/bash\ntrue\n", "partition": "normal", "time_limit": "1"}
JOBS_PER_MINUTE = 2


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    tmp = make_portal.dir()
    write_broken_app(tmp / "apps", "Broken")
    return make_portal(
        tmp=tmp,
        app_dirs=[tmp / "apps"],
        rate_limit_jobs_per_minute=JOBS_PER_MINUTE,
        rate_limit_jobs_per_hour=0,
        rate_limit_sessions_per_minute=1,
        rate_limit_sessions_per_hour=0,
    )


def within_one_minute() -> None:
    """Start a test's requests early in a minute, so they share one window."""
    second = datetime.now(UTC).second
    if second > 40:
        time.sleep(61 - second)


def submit(client: httpx.Client, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/v1/jobs", json=TINY, headers=headers, params=params)


def assert_limited(response: httpx.Response, what: str, limit: int) -> None:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    detail = response.json()["detail"]
    assert detail.startswith(f"Too many {what}: at most {limit} per minute. Try again in ")
    assert response.json()["code"] == "rate_limited"


def test_job_submissions_are_limited_per_user(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], carol: dict[str, str]
) -> None:
    within_one_minute()
    key = f"rate-{uuid.uuid4()}"
    with portal.client(headers=alice) as c:
        for _ in range(3):  # dry runs are not counted
            assert submit(c, dry_run="true").status_code == 200
        first = submit(c, key)
        assert first.status_code == 201, first.text
        replay = submit(c, key)  # a replay is not counted either
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        assert submit(c).status_code == 201
        assert_limited(submit(c), "job submissions", JOBS_PER_MINUTE)
        assert_limited(submit(c, f"rate-{uuid.uuid4()}"), "job submissions", JOBS_PER_MINUTE)
        # At the limit, the first key still replays, and a dry run still previews.
        again = submit(c, key)
        assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
        assert submit(c, dry_run="true").status_code == 200
    with portal.client(headers=bob) as c:  # another user has a budget of their own
        assert submit(c).status_code == 201
    with portal.client(headers=carol) as c:  # admins are limited too (by default)
        assert submit(c).status_code == 201
        assert submit(c).status_code == 201
        assert_limited(submit(c), "job submissions", JOBS_PER_MINUTE)
    with portal.services.database.session() as session:
        refused = session.scalars(
            select(AuditEntry).where(
                AuditEntry.username == "alice",
                AuditEntry.action == "job.submit",
                AuditEntry.result == "refused",
            )
        ).all()
    assert len(refused) == 2 and "Too many job submissions" in str(refused[0].detail)


def test_template_submissions_count_as_job_submissions(
    portal: RunningPortal, dave: dict[str, str]
) -> None:
    within_one_minute()
    with portal.client(headers=dave) as c:
        created = c.post(
            "/api/v1/templates",
            json={
                "name": "rate limit test",
                "category": "test",
                "script": TINY["script"],
                "options": {"partition": "normal", "time_limit": "1"},
            },
        )
        assert created.status_code == 201, created.text
        url = f"/api/v1/templates/{created.json()['id']}/submit"
        assert c.post(url, json={}).status_code == 201
        assert c.post(url, json={}, params={"dry_run": "true"}).status_code == 200
        assert submit(c).status_code == 201  # the second of this minute, through /jobs
        assert_limited(c.post(url, json={}), "job submissions", JOBS_PER_MINUTE)


def test_session_launches_are_limited_per_user(portal: RunningPortal, bob: dict[str, str]) -> None:
    within_one_minute()
    jobs_counted = job_counts(portal, "bob")
    with portal.client(headers=bob) as c:
        launched = c.post("/api/v1/sessions", json={"app_id": "broken"})
        assert launched.status_code == 201, launched.text
        assert_limited(
            c.post("/api/v1/sessions", json={"app_id": "broken"}),
            "interactive session launches",
            1,
        )
        relaunch = c.post(f"/api/v1/sessions/{launched.json()['id']}/relaunch")
        assert_limited(relaunch, "interactive session launches", 1)
        # Only one session was made: the refusals left nothing behind.
        assert len(c.get("/api/v1/sessions").json()) == 1
        c.delete(f"/api/v1/sessions/{launched.json()['id']}")
    # A session launch is not also counted as a job submission: no window's count grew
    # (rows of past windows may be pruned meanwhile).
    after = job_counts(portal, "bob")
    assert all(n <= jobs_counted.get(w, 0) for w, n in after.items()), (jobs_counted, after)


def job_counts(portal: RunningPortal, username: str) -> dict[int, int]:
    with portal.services.database.session() as session:
        rows = session.scalars(
            select(RateCounter).where(
                RateCounter.username == username, RateCounter.action == "job.submit"
            )
        ).all()
        return {row.window_index: row.count for row in rows}


@pytest.fixture(scope="module")
def dave(portal: RunningPortal) -> dict[str, str]:
    return dict(portal.login("dave"))
