"""Submitting a job as the user: script, argv, input files, Apptainer, idempotency.

``submit_job`` turns a validated ``JobRequest`` into sbatch's argv and script
(``sbatch_script``), runs ``sbatch`` as the user through the run-as boundary with a
clean environment (only the variables the person asked for plus ``INPUT`` and
``FILE_*``), and records the submission. An ``Idempotency-Key`` makes a retried
request return the first job: the key is stored before sbatch runs and the job
carries it in its comment, so even a crash between the two is reconciled against
Slurm instead of submitting twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hpcportal.config import Settings
from hpcportal.db.models import Submission
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, InvalidInput, SlurmError
from hpcportal.runas import RunAs
from hpcportal.services import sbatch_script
from hpcportal.services.apptainer import ApptainerCatalog, find_image, wrap_script
from hpcportal.services.identity import Principal
from hpcportal.services.submit_models import (
    JobRequest,
    SubmitPreview,
    SubmitResult,
    TestOnlyVerdict,
)
from hpcportal.services.user_paths import user_area
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor

_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}/[^/\x00]{1,255}$")
_TEST_ONLY = re.compile(r"to start at (?P<start>\S+) using \d+ processors on nodes (?P<nodes>\S+)")
#: A submission still "submitting" after this long was interrupted; reconcile it.
IN_FLIGHT_SECONDS = 60.0
COMMENT_PREFIX = "hpcportal-key:"


@dataclass(frozen=True)
class SubmitContext:
    """What a submission needs from the running portal."""

    settings: Settings
    executor: SlurmExecutor
    adapter: SlurmAdapter
    runas: RunAs
    database: Database
    apptainer: ApptainerCatalog


def submit_job(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    *,
    idempotency_key: str | None = None,
    dry_run: bool = False,
    template_id: int | None = None,
) -> SubmitResult | SubmitPreview:
    """Submit (or, with ``dry_run``, preview) ``request`` as ``who``."""
    if dry_run:
        return preview(ctx, request, who)
    if idempotency_key is None:
        return _submit_now(ctx, request, who, None, template_id)
    if not _KEY.fullmatch(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 128 printable characters.")
    return _submit_once(ctx, request, who, idempotency_key, template_id)


# --- building -------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    script: str
    argv: list[str]
    env: dict[str, str]
    conflicts: list[Any]
    inner_script: tuple[str, str] | None  # (path, text) to write first, for Apptainer


def build(ctx: SubmitContext, request: JobRequest, who: Principal, *, comment: str | None) -> Built:
    """Everything sbatch will get, without running anything but reads as the user."""
    directives = sbatch_script.parse_directives(request.script)
    argv = ["--parsable", "--export=ALL", *sbatch_script.form_options(request)]
    home = user_area(ctx.settings, who, "{home}")
    if request.work_dir is None and not sbatch_script.sets_option(directives, "--chdir"):
        argv.append(f"--chdir={home}")
    if comment is not None:
        argv.append(f"--comment={comment}")
    env = dict(request.environment) | _input_environment(ctx, request, who)
    script, inner = request.script, None
    if request.apptainer_image is not None:
        script, inner = _apptainer(ctx, request, who, directives)
    return Built(script, argv, env, sbatch_script.conflicts(request, directives), inner)


def _apptainer(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    directives: list[sbatch_script.Directive],
) -> tuple[str, tuple[str, str]]:
    """A wrapper that runs the user's script *file* inside the image.

    The script goes to a file, never into a heredoc, so no line of it (such as
    ``APPTAINER_SCRIPT``) can end anything early; its ``#SBATCH`` lines are carried
    into the wrapper, which is what sbatch reads.
    """
    assert request.apptainer_image is not None
    image = find_image(ctx.apptainer, request.apptainer_image)
    token = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    inner_path = f"{user_area(ctx.settings, who, ctx.settings.submission_root)}/{token}/script.sh"
    body = wrap_script(
        image,
        inner_path,
        gpu=sbatch_script.wants_gpus(request, directives),
        binds=ctx.settings.apptainer_binds,
        command=ctx.settings.apptainer_command,
    )
    header = sbatch_script.directive_header(request.script)
    wrapper = "#!/bin/bash\n" + (header + "\n" if header else "") + body.rstrip("\n") + "\n"
    return wrapper, (inner_path, request.script)


def _input_environment(ctx: SubmitContext, request: JobRequest, who: Principal) -> dict[str, str]:
    """``INPUT`` (the first file) and ``FILE_<NAME>`` for each uploaded input file."""
    if not request.input_files:
        return {}
    root = user_area(ctx.settings, who, ctx.settings.upload_root)
    paths = []
    for upload_id in request.input_files:
        if not _UPLOAD_ID.fullmatch(upload_id) or ".." in upload_id.split("/"):
            raise InvalidInput(f"{upload_id!r} is not an upload id (like 20261121-abc/data.csv).")
        path = f"{root}/{upload_id}"
        found = ctx.runas.call(who.username, {"op": "stat", "path": path})
        if not found.get("exists") or found.get("type") != "file":
            raise InvalidInput(f"No uploaded file {upload_id!r}; upload it first.")
        paths.append(path)
    names = sbatch_script.environment_names([p.rsplit("/", 1)[1] for p in paths])
    return {"INPUT": paths[0], **dict(zip(names, paths, strict=True))}


# --- running ------------------------------------------------------------------------


def preview(ctx: SubmitContext, request: JobRequest, who: Principal) -> SubmitPreview:
    built = build(ctx, request, who, comment=None)
    return SubmitPreview(
        script=built.script,
        argv=["sbatch", *built.argv],
        conflicts=built.conflicts,
        verdict=test_only(ctx, who, built),
    )


def test_only(ctx: SubmitContext, who: Principal, built: Built) -> TestOnlyVerdict:
    """``sbatch --test-only``: Slurm's verdict and start estimate, no job created."""
    argv = ["--test-only", *[a for a in built.argv if a != "--parsable"]]
    try:
        done = ctx.executor.run(
            "sbatch", argv, as_user=who.username, stdin=built.script.encode(), env=built.env
        )
    except SlurmError as exc:
        return TestOnlyVerdict(accepted=False, message=exc.message)
    text = (done.stderr or done.stdout.decode()).strip()
    match = _TEST_ONLY.search(text)
    start = None
    if match:
        try:
            start = datetime.fromisoformat(match["start"]).replace(tzinfo=UTC)
        except ValueError:
            start = None
    return TestOnlyVerdict(
        accepted=True,
        message=text.removeprefix("sbatch: "),
        start_estimate=start,
        nodes=match["nodes"] if match else None,
    )


def _run_sbatch(ctx: SubmitContext, who: Principal, built: Built) -> int:
    if built.inner_script is not None:
        path, text = built.inner_script
        data = text.encode()
        ctx.runas.call(
            who.username,
            {"op": "write-file", "path": path, "size": len(data), "mode": 0o700, "parents": True},
            payload=data,
        )
    done = ctx.executor.run(
        "sbatch", built.argv, as_user=who.username, stdin=built.script.encode(), env=built.env
    )
    try:
        return int(done.stdout.decode().strip().split(";")[0])
    except ValueError as exc:
        raise SlurmError(f"sbatch answered something unexpected: {done.stdout[:200]!r}") from exc


def _result(built: Built, job_id: int, *, replayed: bool) -> SubmitResult:
    return SubmitResult(
        job_id=job_id,
        script=built.script,
        argv=["sbatch", *built.argv],
        conflicts=built.conflicts,
        replayed=replayed,
    )


def _submit_now(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    key: str | None,
    template_id: int | None,
) -> SubmitResult:
    built = build(ctx, request, who, comment=None)
    job_id = _run_sbatch(ctx, who, built)
    with ctx.database.session() as session:
        now = datetime.now(UTC)
        session.add(
            Submission(
                username=who.username,
                idempotency_key=key,
                request_hash=request_hash(request, template_id),
                state="submitted",
                job_id=job_id,
                template_id=template_id,
                created_at=now,
                finished_at=now,
            )
        )
    return _result(built, job_id, replayed=False)


# --- idempotency ------------------------------------------------------------------------


def request_hash(request: JobRequest, template_id: int | None) -> str:
    body = json.dumps([request.model_dump(mode="json"), template_id], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def key_marker(username: str, key: str) -> str:
    """What the job's comment carries: a digest of the key, not the key itself."""
    return COMMENT_PREFIX + hashlib.sha256(f"{username}\0{key}".encode()).hexdigest()[:24]


def _submit_once(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    key: str,
    template_id: int | None,
) -> SubmitResult:
    digest = request_hash(request, template_id)
    marker = key_marker(who.username, key)
    deadline = time.monotonic() + ctx.settings.slurm_timeout + 5
    while True:
        row = _claim(ctx, who.username, key, digest, template_id)
        if row is None:
            break  # we own the key now
        if row.request_hash != digest:
            raise Conflict("This Idempotency-Key was used for a different request.")
        if row.state == "submitted" and row.job_id is not None:
            return _result(build(ctx, request, who, comment=marker), row.job_id, replayed=True)
        age = (datetime.now(UTC) - row.created_at).total_seconds()
        if age > IN_FLIGHT_SECONDS:
            # The first attempt died between sbatch and the database: ask Slurm, once.
            found = ctx.adapter.job_with_comment(who.username, marker)
            if found is not None:
                _finish(ctx, row.id, found)
                return _result(build(ctx, request, who, comment=marker), found, replayed=True)
            _take_over(ctx, row.id)
            break
        # Still in flight elsewhere: wait for its row (no Slurm call per poll).
        if time.monotonic() > deadline:
            raise Conflict("A submission with this Idempotency-Key is still running; retry.")
        time.sleep(0.25)
    built = build(ctx, request, who, comment=marker)
    try:
        job_id = _run_sbatch(ctx, who, built)
    except Exception:
        _forget(ctx, who.username, key)  # nothing was created: a retry may try again
        raise
    with ctx.database.session() as session:
        row_id = session.scalars(
            select(Submission.id).where(
                Submission.username == who.username, Submission.idempotency_key == key
            )
        ).one()
    _finish(ctx, row_id, job_id)
    return _result(built, job_id, replayed=False)


def _claim(
    ctx: SubmitContext, username: str, key: str, digest: str, template_id: int | None
) -> Submission | None:
    """Insert the key as 'submitting'; None if we got it, else the existing row."""
    try:
        with ctx.database.session() as session:
            session.add(
                Submission(
                    username=username,
                    idempotency_key=key,
                    request_hash=digest,
                    state="submitting",
                    template_id=template_id,
                    created_at=datetime.now(UTC),
                )
            )
        return None
    except IntegrityError:
        with ctx.database.session() as session:
            row = session.scalars(
                select(Submission).where(
                    Submission.username == username, Submission.idempotency_key == key
                )
            ).one()
            session.expunge(row)
            return row


def _finish(ctx: SubmitContext, row_id: int, job_id: int) -> None:
    with ctx.database.session() as session:
        row = session.get_one(Submission, row_id)
        row.state, row.job_id, row.finished_at = "submitted", job_id, datetime.now(UTC)


def _take_over(ctx: SubmitContext, row_id: int) -> None:
    with ctx.database.session() as session:
        session.get_one(Submission, row_id).created_at = datetime.now(UTC)


def _forget(ctx: SubmitContext, username: str, key: str) -> None:
    with ctx.database.session() as session:
        row = session.scalars(
            select(Submission).where(
                Submission.username == username, Submission.idempotency_key == key
            )
        ).one_or_none()
        if row is not None and row.state == "submitting":
            session.delete(row)
