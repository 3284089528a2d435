"""A session launch whose sbatch Slurm does not confirm makes exactly one job.

The launch submits with a key derived from the session id; against a hung slurmctld
it answers 202 with the session still ``creating`` (not a failure that loses the
job), relaunching it is refused, and the tracker then finds the job sbatch left (or
submits it once) and records it. A job that turns up for a session that already
ended is cancelled as its owner. All on the live dev cluster, as alice.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hpcportal.db.migrate import upgrade
from hpcportal.db.models import InteractiveSession, Submission
from hpcportal.db.session import Database
from hpcportal.runas import AsUser
from hpcportal.services.apps import AppCatalog
from hpcportal.services.apptainer import ApptainerCatalog
from hpcportal.services.session_confirm import cancel_strays, confirm_launches
from hpcportal.services.sessions import SessionContext, job_request, session_key
from hpcportal.services.submit import SubmitContext, key_marker, request_hash
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration import slurm_cli
from tests.integration.apps_fixture import write_broken_app
from tests.integration.portals import PortalFactory
from tests.integration.test_idempotency import jobs_carrying, slurmctld_pid

pytestmark = pytest.mark.integration

SESSIONS = "/home/alice/hpcportal/sessions"


def test_a_launch_against_a_hung_slurmctld_ends_with_one_recorded_job(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    conf = devcluster["slurm_conf"]
    apps = tmp_path / "apps"
    write_broken_app(apps, "Broken")  # its job exits at once: the shared cluster stays free
    settings = make_portal.settings(
        tmp_path, app_dirs=[apps], slurm_timeout=3.0, session_start_timeout=60.0
    )
    with make_portal.run(settings) as portal, portal.client(headers=portal.login("alice")) as c:
        pid = slurmctld_pid(devcluster)
        os.kill(pid, signal.SIGSTOP)
        try:
            # sbatch's request reaches slurmctld's socket, then sbatch is given up on.
            launched = c.post("/api/v1/sessions", json={"app_id": "broken"})
            sid = launched.json().get("id")
            relaunched = c.post(f"/api/v1/sessions/{sid}/relaunch") if sid else None
        finally:
            os.kill(pid, signal.SIGCONT)
        assert launched.status_code == 202, launched.text
        body = launched.json()
        assert body["state"] == "creating" and body["job_id"] is None and body["error"] is None
        assert relaunched is not None and relaunched.status_code == 409, relaunched.text
        assert "waiting for Slurm" in relaunched.json()["detail"]
        marker = key_marker("alice", session_key(sid))
        try:
            deadline = time.monotonic() + 90
            while body["job_id"] is None and time.monotonic() < deadline:
                time.sleep(0.5)
                body = c.get(f"/api/v1/sessions/{sid}").json()
            assert body["job_id"] is not None, body
            assert body["state"] != "creating", body
            assert jobs_carrying(conf, marker) == [body["job_id"]]
            # Later passes of the tracker neither submit again nor change the job.
            portal.wait_for_generation(portal.services.snapshot.health().generation + 2)
            assert jobs_carrying(conf, marker) == [body["job_id"]]
            assert c.get(f"/api/v1/sessions/{sid}").json()["job_id"] == body["job_id"]
            # The relaunch made nothing: alice's sessions are this one only.
            listed = c.get("/api/v1/sessions").json()
            assert [s["id"] for s in listed] == [sid]
        finally:
            slurm_cli.scancel(conf, *jobs_carrying(conf, marker), missing_ok=True)


# --- the tracker's steps, called directly ------------------------------------------------


@dataclass
class Portal:
    """What the tracker works with, on the live cluster, without a running portal."""

    ctx: SessionContext
    database: Database


@pytest.fixture
def portal(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> Iterator[Portal]:
    settings = make_portal.settings(tmp_path, session_start_timeout=60.0)
    upgrade(settings)
    database = Database(settings)
    executor = SlurmExecutor.from_settings(settings)
    submit = SubmitContext(
        settings, SlurmAdapter(executor), executor.runas, database, ApptainerCatalog([])
    )
    yield Portal(SessionContext(submit, AppCatalog([])), database)
    database.dispose()


def _session(sid: str, state: str, *, ended: bool) -> InteractiveSession:
    now = datetime.now(UTC)
    return InteractiveSession(
        id=sid,
        username="alice",
        app_id="tiny",
        app_name="Tiny",
        connection="web",
        state=state,
        options={},
        session_dir=f"{SESSIONS}/{sid}",
        created_at=now - timedelta(seconds=30),
        updated_at=now,
        ended_at=now if ended else None,
        error="Slurm did not confirm the session's job." if ended else None,
    )


def _unknown_key(sid: str, digest: str) -> Submission:
    """The key row an uncertain sbatch leaves: the job may or may not exist."""
    return Submission(
        username="alice",
        idempotency_key=session_key(sid),
        request_hash=digest,
        state="unknown",
        created_at=datetime.now(UTC) - timedelta(seconds=30),
        finished_at=datetime.now(UTC) - timedelta(seconds=20),
    )


def test_when_slurm_has_no_job_the_tracker_submits_it_once(
    portal: Portal, devcluster: dict[str, Any]
) -> None:
    conf = devcluster["slurm_conf"]
    sid = secrets.token_hex(8)
    folder = f"{SESSIONS}/{sid}"
    script = "#!/bin/bash\ntrue\n"
    helper = AsUser(portal.ctx.submit.runas, "alice")
    helper.make_folder(SESSIONS, sid)
    helper.write_file(folder, "job.sh", script.encode(), mode=0o700)
    digest = request_hash(job_request("tiny", {}, script, folder), None)
    with portal.database.session() as session:
        session.add(_session(sid, "creating", ended=False))
        session.add(_unknown_key(sid, digest))
    marker = key_marker("alice", session_key(sid))
    try:
        changed = confirm_launches(portal.ctx)
        assert [(s.username, s.id, s.state) for s in changed] == [("alice", sid, "pending")]
        job_id = changed[0].job_id
        assert job_id is not None and jobs_carrying(conf, marker) == [job_id]
        assert confirm_launches(portal.ctx) == []  # recorded: nothing more to do
        assert jobs_carrying(conf, marker) == [job_id]
    finally:
        slurm_cli.scancel(conf, *jobs_carrying(conf, marker), missing_ok=True)


@pytest.mark.parametrize("ended_as", ["failed", "cancelled"])  # given up on; deleted
def test_a_job_that_turns_up_for_an_ended_session_is_cancelled(
    portal: Portal, devcluster: dict[str, Any], ended_as: str
) -> None:
    conf = devcluster["slurm_conf"]
    sid = secrets.token_hex(8)
    marker = key_marker("alice", session_key(sid))
    with portal.database.session() as session:
        session.add(_session(sid, ended_as, ended=True))
        session.add(_unknown_key(sid, "0" * 64))
    # What slurmctld made of the hung sbatch once it woke: a job with the key's marker.
    job_id = slurm_cli.sbatch(
        conf, "alice", "-J", "stray-session", f"--comment={marker}", "--wrap", "sleep 300"
    )
    try:
        changed = cancel_strays(portal.ctx)
        assert [s.id for s in changed] == [sid]
        ended = changed[0]
        assert ended.state == ended_as and ended.job_id == job_id
        assert ended.error is not None and f"job {job_id} turned up later" in ended.error
        state = slurm_cli.run(conf, ["squeue", "-h", "-j", str(job_id), "-o", "%T"]).strip()
        assert state in ("", "CANCELLED", "COMPLETING"), state
        with portal.database.session() as session:
            key = session.get(Submission, _key_id(portal, sid))
            assert key is not None and key.state == "submitted" and key.job_id == job_id
        assert cancel_strays(portal.ctx) == []  # settled: Slurm is not asked again
    finally:
        slurm_cli.scancel(conf, job_id, missing_ok=True)


def _key_id(portal: Portal, sid: str) -> int:
    with portal.database.session() as session:
        return next(
            row.id for row in session.query(Submission).filter_by(idempotency_key=session_key(sid))
        )
