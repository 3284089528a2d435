"""An interrupted submission (sbatch ran, the database never heard) is reconciled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hpcportal.db.migrate import upgrade
from hpcportal.db.models import Submission
from hpcportal.db.session import Database
from hpcportal.services.apptainer import ApptainerCatalog
from hpcportal.services.identity import lookup_principal
from hpcportal.services.submit import SubmitContext, key_marker, request_hash, submit_job
from hpcportal.services.submit_models import JobRequest, SubmitResult
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration import slurm_cli
from tests.integration.portal_server import portal_settings


def test_a_retry_after_a_crash_finds_the_job_by_its_comment(
    devcluster: dict[str, Any], tmp_path: Path
) -> None:
    settings = portal_settings(tmp_path, devcluster["slurm_conf"])
    upgrade(settings)
    database = Database(settings)
    executor = SlurmExecutor.from_settings(settings)
    ctx = SubmitContext(
        settings, executor, SlurmAdapter(executor), executor.runas, database,
        ApptainerCatalog([]),
    )  # fmt: skip
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
