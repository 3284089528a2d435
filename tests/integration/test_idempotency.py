"""One job per Idempotency-Key whatever Slurm does, and submits under load.

An interrupted submission (sbatch ran, the database never heard) and one whose sbatch
timed out against a hung slurmctld are both reconciled against Slurm instead of
submitting twice. Fifty concurrent submits on SQLite (and PostgreSQL) all get their
job, never a 500.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hpcportal.db.migrate import upgrade
from hpcportal.db.models import AuditEntry, Submission
from hpcportal.db.session import Database
from hpcportal.devcluster import DevCluster
from hpcportal.services.apptainer import ApptainerCatalog
from hpcportal.services.identity import lookup_principal
from hpcportal.services.submit import SubmitContext, key_marker, request_hash, submit_job
from hpcportal.services.submit_models import JobRequest, SubmitResult
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

#: A job that ends at once, in the default partition: the shared cluster stays free.
TINY = {"script": "#!/bin/bash\ntrue\n", "partition": "normal", "time_limit": "1"}


def test_a_retry_after_a_crash_finds_the_job_by_its_comment(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    settings = make_portal.settings(tmp_path)
    upgrade(settings)
    database = Database(settings)
    executor = SlurmExecutor.from_settings(settings)
    ctx = SubmitContext(
        settings, SlurmAdapter(executor), executor.runas, database, ApptainerCatalog([])
    )
    alice = lookup_principal("alice", settings.admin_group)
    assert alice is not None
    request = JobRequest(script="#!/bin/bash\nsleep 30\n", name="crashed-submit")
    key = f"crash-{datetime.now(UTC).timestamp()}"
    # What a portal that died right after sbatch leaves: the job with its marker,
    # and a row still "submitting" from well over a minute ago.
    job_id = slurm_cli.sbatch(
        devcluster["slurm_conf"], "alice", "-J", "crashed-submit",
        f"--comment={key_marker('alice', key)}", "--wrap", "sleep 30",
    )  # fmt: skip
    with database.session() as session:
        session.add(
            Submission(
                username="alice",
                idempotency_key=key,
                request_hash=request_hash(request, None),
                state="submitting",
                created_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
    try:
        result = submit_job(ctx, request, alice, idempotency_key=key)
        assert isinstance(result, SubmitResult)
        assert result.replayed and result.job_id == job_id
        queued = slurm_cli.run(
            devcluster["slurm_conf"],
            ["squeue", "-h", "-u", "alice", "-n", "crashed-submit", "-o", "%i"],
        ).split()
        assert queued == [str(job_id)]  # no second job
        again = submit_job(ctx, request, alice, idempotency_key=key)
        assert isinstance(again, SubmitResult) and again.job_id == job_id
    finally:
        slurm_cli.scancel(devcluster["slurm_conf"], job_id)
        database.dispose()


# --- a hung slurmctld -------------------------------------------------------------------


def slurmctld_pid(devcluster: dict[str, Any]) -> int:
    status = DevCluster(Path(devcluster["dir"])).status()
    (ctld,) = [c for c in status["components"] if c["name"] == "slurmctld"]
    assert ctld["running"] and ctld["pid"], "slurmctld must be up before this test"
    return int(ctld["pid"])


def jobs_carrying(slurm_conf: str, marker: str) -> list[int]:
    """Every job slurmctld knows (finished ones too, for MinJobAge) with this comment,
    asked by the test itself, as root, not through the portal."""
    listed = slurm_cli.all_jobs(slurm_conf)
    return sorted(int(j["job_id"]) for j in listed if j.get("comment") == marker)


def test_a_hung_slurmctld_never_makes_two_jobs_for_one_key(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    conf = devcluster["slurm_conf"]
    settings = make_portal.settings(tmp_path, slurm_timeout=3.0)
    key = f"hung-{uuid.uuid4()}"
    marker = key_marker("alice", key)
    body = {**TINY, "name": "idem-hung"}
    with make_portal.run(settings) as portal, portal.client() as c:
        headers = {**portal.login("alice"), "Idempotency-Key": key}
        pid = slurmctld_pid(devcluster)
        os.kill(pid, signal.SIGSTOP)
        try:
            # sbatch's request reaches slurmctld's socket, then sbatch is given up on.
            first = c.post("/api/v1/jobs", json=body, headers=headers)
            # A retry while Slurm still cannot answer submits nothing.
            retry = c.post("/api/v1/jobs", json=body, headers=headers)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert first.status_code == 503, first.text
        assert first.json()["code"] == "submission_uncertain"
        assert "same Idempotency-Key" in first.json()["detail"]
        assert retry.status_code == 503, retry.text
        assert retry.json()["code"] == "submission_uncertain"
        assert "nothing was submitted again" in retry.json()["detail"]
        with portal.services.database.session() as session:
            row = session.scalars(select(Submission).where(Submission.idempotency_key == key)).one()
            assert row.state == "unknown" and row.job_id is None
        # slurmctld works through the request it received while hung.
        found = _wait_for(lambda: jobs_carrying(conf, marker), timeout=30)
        try:
            again = c.post("/api/v1/jobs", json=body, headers=headers)
            assert again.status_code == 200, again.text
            assert again.json()["replayed"] is True
            assert again.json()["job_id"] == found[0]
            assert jobs_carrying(conf, marker) == found and len(found) == 1
            once_more = c.post("/api/v1/jobs", json=body, headers=headers)
            assert once_more.status_code == 200 and once_more.json()["job_id"] == found[0]
        finally:
            slurm_cli.scancel(conf, *jobs_carrying(conf, marker), missing_ok=True)


def test_a_retry_before_the_job_appears_does_not_submit_a_second(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    """The retry comes at once after SIGCONT, racing slurmctld's backlog: still one job."""
    conf = devcluster["slurm_conf"]
    settings = make_portal.settings(tmp_path, slurm_timeout=3.0)
    key = f"race-{uuid.uuid4()}"
    marker = key_marker("bob", key)
    body = {**TINY, "name": "idem-race"}
    with make_portal.run(settings) as portal, portal.client() as c:
        headers = {**portal.login("bob"), "Idempotency-Key": key}
        pid = slurmctld_pid(devcluster)
        os.kill(pid, signal.SIGSTOP)
        try:
            first = c.post("/api/v1/jobs", json=body, headers=headers)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert first.status_code == 503, first.text
        try:
            retry = c.post("/api/v1/jobs", json=body, headers=headers)
            assert retry.status_code in (200, 201), retry.text
            found = jobs_carrying(conf, marker)
            assert found == [retry.json()["job_id"]]
        finally:
            slurm_cli.scancel(conf, *jobs_carrying(conf, marker), missing_ok=True)


def test_a_certain_refusal_forgets_the_key(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    """Slurm's "no" (an unknown partition) created nothing: the same key may try again."""
    settings = make_portal.settings(tmp_path)
    key = f"refused-{uuid.uuid4()}"
    with make_portal.run(settings) as portal, portal.client() as c:
        headers = {**portal.login("alice"), "Idempotency-Key": key}
        bad = c.post("/api/v1/jobs", json={**TINY, "partition": "nosuch"}, headers=headers)
        assert bad.status_code == 400, bad.text
        with portal.services.database.session() as session:
            left = session.scalars(select(Submission).where(Submission.idempotency_key == key))
            assert left.all() == []
        # A different request under the same key is a new submission, not a conflict.
        good = c.post("/api/v1/jobs", json={**TINY, "name": "idem-after-refusal"}, headers=headers)
        assert good.status_code == 201, good.text
        slurm_cli.scancel(devcluster["slurm_conf"], good.json()["job_id"], missing_ok=True)


def test_a_template_submit_reconciles_an_uncertain_key_like_post_jobs(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    """``/templates/{id}/submit`` goes through the same key handling: a key left
    "unknown" whose job Slurm has is answered with that job, not a second one."""
    conf = devcluster["slurm_conf"]
    settings = make_portal.settings(tmp_path)
    key = f"template-{uuid.uuid4()}"
    marker = key_marker("alice", key)
    with make_portal.run(settings) as portal, portal.client() as c:
        alice = portal.login("alice")
        made = c.post(
            "/api/v1/templates",
            headers=alice,
            json={
                "name": "Idempotent",
                "category": "demo",
                "script": "#!/bin/bash\ntrue {{ word }}\n",
                "options": {"time_limit": "1", "partition": "normal"},
                "parameters": [{"name": "word", "type": "string", "default": "x"}],
            },
        )
        assert made.status_code == 201, made.text
        template_id = made.json()["id"]
        body = {"parameters": {"word": "y"}}
        rendered = c.post(f"/api/v1/templates/{template_id}/render", headers=alice, json=body)
        request = JobRequest.model_validate(rendered.json())
        # What a timed-out first attempt leaves: Slurm's job with the marker, the key
        # "unknown" in the database.
        job_id = slurm_cli.sbatch(conf, "alice", f"--comment={marker}", "--wrap", "true")
        with portal.services.database.session() as session:
            session.add(
                Submission(
                    username="alice",
                    idempotency_key=key,
                    request_hash=request_hash(request, template_id),
                    state="unknown",
                    template_id=template_id,
                    created_at=datetime.now(UTC) - timedelta(seconds=10),
                )
            )
        try:
            headers = {**alice, "Idempotency-Key": key}
            r = c.post(f"/api/v1/templates/{template_id}/submit", headers=headers, json=body)
            assert r.status_code == 200, r.text
            assert r.json()["replayed"] is True and r.json()["job_id"] == job_id
            assert jobs_carrying(conf, marker) == [job_id]
            use = c.get(f"/api/v1/templates/{template_id}", headers=alice).json()["use_count"]
            assert use == 0  # the replay was not counted as a new submission
        finally:
            slurm_cli.scancel(conf, *jobs_carrying(conf, marker), missing_ok=True)


def test_asking_slurm_for_a_marker_nobody_carries(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    """The whole question, as the user: squeue, sacct and the accounting flags.

    "No job" comes back only as Slurm's own answer. Whether accounting stores comments
    (else older jobs would be "unsure" rather than "not it") is the cluster's
    ``AccountingStoreFlags``, read here straight from slurmctld: the dev cluster sets
    ``job_comment`` since it was rendered with it, an older one may not.
    """
    settings = make_portal.settings(tmp_path)
    executor = SlurmExecutor.from_settings(settings)
    adapter = SlurmAdapter(executor)
    marker = key_marker("dave", f"nobody-{uuid.uuid4()}")
    match = adapter.job_with_comment("dave", marker, since=datetime.now(UTC))
    assert match.job_id is None and match.unsure == ()
    config = slurm_cli.run(devcluster["slurm_conf"], ["scontrol", "show", "config"])
    (flags,) = [ln for ln in config.splitlines() if ln.startswith("AccountingStoreFlags")]
    assert adapter.stores_job_comments() is ("job_comment" in flags.lower())
    assert executor.calls["squeue"] == 1 and executor.calls["sacct"] == 1


def _wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"nothing within {timeout} s")


# --- load ---------------------------------------------------------------------------

CONCURRENT = 50


def fire_submits(portal: RunningPortal, count: int) -> tuple[list[httpx.Response], list[str]]:
    """``count`` submits at once, with distinct keys, from alice and bob."""
    users = ("alice", "bob")
    headers = {user: portal.login(user) for user in users}
    keys = [f"load-{uuid.uuid4()}" for _ in range(count)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=portal.url, timeout=120, limits=limits) as c:

            async def one(i: int) -> httpx.Response:
                h = {**headers[users[i % 2]], "Idempotency-Key": keys[i]}
                return await c.post("/api/v1/jobs", json={**TINY, "name": "idem-load"}, headers=h)

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(fire()), keys


def check_load(portal: RunningPortal, slurm_conf: str) -> None:
    answers, keys = fire_submits(portal, CONCURRENT)
    ids = [r.json()["job_id"] for r in answers if r.status_code == 201]
    try:
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] * CONCURRENT, [r.text for r in answers if r.status_code != 201]
        assert len(set(ids)) == CONCURRENT
        # Every job is in Slurm with its key's marker.
        listed = slurm_cli.all_jobs(slurm_conf)
        comments = {int(j["job_id"]): j.get("comment") for j in listed}
        for i, (answer, key) in enumerate(zip(answers, keys, strict=True)):
            user = ("alice", "bob")[i % 2]
            assert comments.get(answer.json()["job_id"]) == key_marker(user, key)
        # And nothing on the side was lost: one submitted row and one audit entry each.
        with portal.services.database.session() as session:
            done = select(func.count()).where(
                Submission.idempotency_key.in_(keys), Submission.state == "submitted"
            )
            assert session.scalar(done) == CONCURRENT
            targets = [f"job:{i}" for i in ids]
            audited = select(func.count()).where(
                AuditEntry.action == "job.submit",
                AuditEntry.result == "ok",
                AuditEntry.target.in_(targets),
            )
            assert session.scalar(audited) == CONCURRENT
    finally:
        slurm_cli.scancel(slurm_conf, *ids, missing_ok=True)


def test_fifty_concurrent_submits_on_sqlite(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    settings = make_portal.settings(tmp_path, slurm_timeout=30.0)
    with make_portal.run(settings) as portal:
        check_load(portal, devcluster["slurm_conf"])


@contextmanager
def fresh_postgresql() -> Iterator[str]:
    """A new PostgreSQL database for one test, dropped afterwards."""
    admin_url = os.environ.get(
        "HPCPORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    admin = create_engine(
        make_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"hpcportal_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required when CI is set: {exc.orig}")
        pytest.skip(f"PostgreSQL not reachable ({exc.orig}); set CI=1 to make this a failure")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_fifty_concurrent_submits_on_postgresql(
    devcluster: dict[str, Any], make_portal: PortalFactory, tmp_path: Path
) -> None:
    with fresh_postgresql() as url:
        settings = make_portal.settings(tmp_path, slurm_timeout=30.0, database_url=url)
        with make_portal.run(settings) as portal:
            try:
                check_load(portal, devcluster["slurm_conf"])
            finally:
                portal.services.database.dispose()
