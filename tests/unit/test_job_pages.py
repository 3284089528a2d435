"""The job pages with finished jobs (``web/job_pages.py``): a job only accounting still
knows, the "Recent" filter, the jump box, and how priority and progress read.

The app and its recorded Slurm answers come from ``test_web_pages``' fixtures.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hpcportal.composition import services_of
from hpcportal.config import Settings
from hpcportal.db.models import Submission
from hpcportal.db.session import Database
from hpcportal.errors import NotFound
from hpcportal.services.finished_jobs import RECENT_DAYS
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import OutputChunk
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus
from hpcportal.web import job_pages
from tests.unit import test_web_pages as web
from tests.unit.test_web_pages import ALICE, BOB, log_in

Client = TestClient
# The app with recorded Slurm answers, and its settings: ``test_web_pages``' fixtures.
client = web.client
settings = web.settings


def _forget(client: TestClient, job_id: str) -> None:
    """slurmctld forgets ``job_id``: the next snapshot lacks it, accounting keeps it."""
    app: Any = client.app
    adapter = services_of(app).adapter
    adapter.job_list = [j for j in adapter.job_list if j.id != job_id]
    assert client.portal is not None
    client.portal.call(services_of(app).snapshot.refresh)


def _read_as_written(
    runas: Any, who: Principal, detail: Any, stream: str, offset: int, size: int
) -> OutputChunk:
    """Output of a finished job whose file is where the portal says it is."""
    path = detail.files.stdout
    if path != "/home/alice/python-9.out":
        raise NotFound(f"No such file: {path}")
    data = b"answer: 42\n"
    return OutputChunk(
        job_id=detail.accounting.id,
        stream="stdout",
        path=path,
        offset=offset,
        next_offset=min(len(data), offset + size),
        size=len(data),
        data=data[offset : offset + size].decode(),
        eof=True,
        finished=True,
    )


def test_a_job_only_accounting_knows_reads_as_a_finished_job(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_pages, "read_chunk", _read_as_written)
    _forget(client, "9")
    log_in(client, settings, ALICE)
    html = client.get("/jobs/9").text
    assert 'data-source="accounting"' in html
    assert 'data-testid="job-state" data-status="failed"' in html
    # The recorded script says --output=python-%j.out: expanded, in the work dir.
    assert '<code data-testid="job-output-file">/home/alice/python-9.out</code>' in html
    assert "answer: 42" in html and 'data-testid="output-error"' not in html
    ended = re.search(r'<time datetime="([^"]*)" data-testid="job-ended"', html)
    assert ended is not None and ended.group(1).startswith("2026-11-21T20:52:08")
    for testid in ("job-reason", "job-dependency", "job-priority"):
        row = re.search(
            rf'<div data-waiting-only hidden><dt>[^<]*</dt><dd data-testid="{testid}"', html
        )
        assert row is not None, f"{testid} is hidden on a finished job"
    assert 'data-testid="job-progress" hidden' in html
    assert 'data-action="requeue"' in html and 'data-testid="action-requeue" hidden' in html
    shown = client.get("/jobs/9?script=true").text
    assert "#SBATCH --output=python-%j.out" in shown
    assert "RECORDED_GREETING=hello world" in shown
    resubmit = client.get("/submit?from=9").text
    assert "#SBATCH --output=python-%j.out" in resubmit


def test_recent_adds_jobs_that_ended_within_the_days_asked(
    client: Client, settings: Settings
) -> None:
    _forget(client, "9")
    log_in(client, settings, ALICE)
    ended = datetime(2026, 11, 21, 20, 52, 8, tzinfo=UTC)
    days = (datetime.now(UTC) - ended) / timedelta(days=1)
    wide = next(d for d in RECENT_DAYS if d > days)
    listed = client.get(f"/jobs?recent={wide}&arrays=expanded").text
    assert '<tr data-job-id="9"' in listed
    assert '<tr data-job-id="9"' not in client.get("/jobs?recent=0").text
    # Someone else's finished jobs stay theirs.
    assert 'data-user="bob"' not in listed


def test_a_job_only_the_portal_remembers_is_found_not_lost(
    client: Client, settings: Settings
) -> None:
    """Neither slurmctld nor accounting knows job 4242, but alice submitted it through
    the portal yesterday: her page and list show it as undetermined; bob gets a 404."""
    now = datetime.now(UTC)
    with Database(settings).session() as db:
        for job_id, submitted in ((4242, now - timedelta(hours=23)), (4244, now)):
            db.add(
                Submission(
                    username="alice", request_hash="x" * 64, state="submitted",
                    job_id=job_id, created_at=submitted, finished_at=submitted,
                )
            )  # fmt: skip
        db.commit()
    log_in(client, settings, ALICE)
    page = client.get("/jobs/4242")
    assert page.status_code == 200
    assert 'data-source="portal"' in page.text and 'data-testid="from-portal"' in page.text
    assert 'data-status="undetermined"' in page.text and 'data-testid="job-actions"' in page.text
    assert 'data-testid="action-cancel" hidden' in page.text
    assert "Where this job wrote its output is not known." in page.text
    assert '<tr data-job-id="4242"' in client.get("/jobs?recent=7").text
    assert '<tr data-job-id="4242"' not in client.get("/jobs?recent=0").text
    # Just submitted and not in the snapshot yet: not listed as "unknown" meanwhile.
    assert '<tr data-job-id="4244"' not in client.get("/jobs?recent=7").text
    assert client.get("/jobs/4243").status_code == 404
    log_in(client, settings, BOB)
    assert client.get("/jobs/4242").status_code == 404


def test_the_jump_box_redirects_and_refuses_what_is_not_a_job_id(
    client: Client, settings: Settings
) -> None:
    log_in(client, settings, ALICE)
    answer = client.get("/jobs/go", params={"id": " 123_4 "})
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs/123_4"
    refused = client.get("/jobs/go", params={"id": "abc"})
    assert refused.status_code == 422 and "is not a job id" in refused.text


def _job(status: JobStatus, **fields: Any) -> Job:
    return Job(
        id="5", job_id=5, name="x", user="alice", partition="normal", state="PENDING",
        status=status, **fields,
    )  # fmt: skip


class _Page:
    """What ``priority_text`` needs of a page: words and numbers (English)."""

    class fmt:
        @staticmethod
        def number(value: int) -> str:
            return f"{value:,}"

    @staticmethod
    def gettext(message: str) -> str:
        return message


@pytest.mark.parametrize(
    ("status", "priority", "shown"),
    [
        (JobStatus.QUEUED, 1234, "1,234"),
        (JobStatus.QUEUED_HELD, 0, "Held (0): it will not start until released"),
        (JobStatus.QUEUED, 4294901712, "First come, first served"),  # priority/basic
        (JobStatus.QUEUED, 4294967294, None),  # NO_VAL
        (JobStatus.QUEUED, 4294967295, None),  # INFINITE
        (JobStatus.RUNNING, 4294901712, None),  # only a waiting job's priority matters
        (JobStatus.COMPLETED, 1234, None),
        (JobStatus.QUEUED, None, None),
    ],
)
def test_priority_reads_as_what_it_means(
    status: JobStatus, priority: int | None, shown: str | None
) -> None:
    page: Any = _Page()
    assert job_pages.priority_text(page, _job(status, priority=priority)) == shown


def test_progress_of_a_running_job() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    start = now - timedelta(minutes=15)
    running = _job(JobStatus.RUNNING, start_time=start, time_limit_minutes=60)
    progress = job_pages.progress_of(running, now)
    assert progress is not None and progress.elapsed_seconds == 900 and progress.percent == 25
    unlimited = job_pages.progress_of(running.model_copy(update={"time_limit_minutes": None}), now)
    assert unlimited is not None and unlimited.limit_seconds == 0 and unlimited.percent == 0
    assert job_pages.progress_of(_job(JobStatus.QUEUED, start_time=start), now) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00"), (3909, "1:05:09"), (183600, "2-03:00:00"), (-5, "0:00:00")],
)
def test_clock_prints_durations_as_slurm_does(seconds: int, text: str) -> None:
    assert job_pages.clock(seconds) == text
