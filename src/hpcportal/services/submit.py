"""Submitting a job as the user: script, argv, input files, Apptainer, idempotency.

``submit_job`` turns a validated ``JobRequest`` into sbatch's argv and script
(``sbatch_script``), runs ``sbatch`` as the user through the run-as boundary with a
clean environment (only the variables the person asked for plus ``INPUT`` and
``FILE_*``), and records the submission. An ``Idempotency-Key`` makes a retried
request return the first job: the key is stored before sbatch runs and the job
carries a digest of it in its comment. When sbatch's outcome is uncertain (a
timeout, a dropped connection) or the portal died in between, the key is kept and a
retry asks Slurm for the job carrying it before submitting again: one job per key,
whatever Slurm does. Once sbatch has answered with a job id, that job is the answer;
storing it in the database is retried and can only be logged, never fail the request.
The key rows themselves (claim, take over, record, forget) are ``submit_keys``.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import Submission
from hpcportal.db.session import Database
from hpcportal.errors import (
    Conflict,
    InvalidInput,
    PortalError,
    SlurmError,
    SlurmInvalidRequest,
    SlurmNotFound,
    SlurmPermissionDenied,
    SubmissionUncertain,
)
from hpcportal.ha.leadership import default_replica_id
from hpcportal.runas import AsUser, RunAs
from hpcportal.services import rate_limits, sbatch_script
from hpcportal.services.apptainer import ApptainerCatalog, find_image, wrap_script
from hpcportal.services.identity import Principal
from hpcportal.services.submit_keys import (
    attempt_limit,
    claim,
    forget,
    key_marker,
    mark_unknown,
    reason,
    record_job,
    request_hash,
    take_over,
)
from hpcportal.services.submit_models import (
    JobRequest,
    SubmitPreview,
    SubmitResult,
    TestOnlyVerdict,
)
from hpcportal.services.user_paths import user_area
from hpcportal.slurm.actions import BatchJob, SlurmActions
from hpcportal.slurm.adapter import SlurmAdapter

_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}/[^/\x00]{1,255}$")
#: Before trusting Slurm's "no job carries the key", ask again this much later.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class SubmitContext:
    """What a submission needs from the running portal."""

    settings: Settings
    adapter: SlurmAdapter
    runas: RunAs
    database: Database
    apptainer: ApptainerCatalog

    @property
    def slurm(self) -> SlurmActions:
        """The typed Slurm actions (sbatch, scancel, scontrol) of the adapter's cluster."""
        return self.adapter.actions


def submit_job(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    *,
    idempotency_key: str | None = None,
    dry_run: bool = False,
    template_id: int | None = None,
    count_as: rate_limits.Action | None = "job.submit",
) -> SubmitResult | SubmitPreview:
    """Submit (or, with ``dry_run``, preview) ``request`` as ``who``.

    A real submission counts against ``who``'s rate limit ``count_as`` (once it is
    known to be new and valid, just before sbatch); a caller that counted already
    (a session launch) passes None. Dry runs and replays never count.
    """
    if dry_run:
        return preview(ctx, request, who)
    if idempotency_key is None:
        return _submit_now(ctx, request, who, None, template_id, count_as)
    if not _KEY.fullmatch(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 128 printable characters.")
    return _submit_once(ctx, request, who, idempotency_key, template_id, count_as)


def _count(ctx: SubmitContext, who: Principal, action: rate_limits.Action | None) -> None:
    if action is not None:
        rate_limits.count(ctx.database, ctx.settings, who, action)


# --- building -------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    script: str
    argv: list[str]
    env: dict[str, str]
    conflicts: list[Any]
    #: (root, path in it, text) to write first, for Apptainer: root is submission_root
    inner_script: tuple[str, str, str] | None


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
) -> tuple[str, tuple[str, str, str]]:
    """A wrapper that runs the user's script *file* inside the image.

    The script goes to a file, never into a heredoc, so no line of it (such as
    ``APPTAINER_SCRIPT``) can end anything early; its ``#SBATCH`` lines are carried
    into the wrapper, which is what sbatch reads.
    """
    assert request.apptainer_image is not None
    image = find_image(ctx.apptainer, request.apptainer_image)
    token = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    root = user_area(ctx.settings, who, ctx.settings.submission_root)
    inner_path = f"{root}/{token}/script.sh"
    body = wrap_script(
        image,
        inner_path,
        gpu=sbatch_script.wants_gpus(request, directives),
        binds=ctx.settings.apptainer_binds,
        command=ctx.settings.apptainer_command,
    )
    header = sbatch_script.directive_header(request.script)
    wrapper = "#!/bin/bash\n" + (header + "\n" if header else "") + body.rstrip("\n") + "\n"
    return wrapper, (root, f"{token}/script.sh", request.script)


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
        found = AsUser(ctx.runas, who.username).stat(root, upload_id)
        if not found.exists or found.type != "file":
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
    try:
        verdict = ctx.slurm.test_only(_batch_job(built), as_user=who.username)
    except SlurmError as exc:
        return TestOnlyVerdict(accepted=False, message=exc.message)
    return TestOnlyVerdict(
        accepted=True,
        message=verdict.message,
        start_estimate=verdict.start_estimate,
        nodes=verdict.nodes,
    )


def _batch_job(built: Built) -> BatchJob:
    """What sbatch gets; ``SlurmActions`` adds ``--parsable`` or ``--test-only``."""
    options = tuple(a for a in built.argv if a != "--parsable")
    return BatchJob(options, built.script, built.env)


def _run_sbatch(ctx: SubmitContext, who: Principal, built: Built) -> int:
    if built.inner_script is not None:
        root, path, text = built.inner_script
        helper = AsUser(ctx.runas, who.username)
        helper.write_file(root, path, text.encode(), mode=0o700, parents=True)
    return ctx.slurm.submit(_batch_job(built), as_user=who.username).job_id


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
    count_as: rate_limits.Action | None,
) -> SubmitResult:
    built = build(ctx, request, who, comment=None)
    _count(ctx, who, count_as)
    try:
        job_id = _run_sbatch(ctx, who, built)
    except Exception as exc:
        if definitely_refused(exc):
            raise
        raise SubmissionUncertain(
            f"Slurm did not confirm the submission ({reason(exc)}), so the job may exist. "
            "Check your jobs before submitting again; send an Idempotency-Key header to "
            "make a retry safe."
        ) from exc
    digest = request_hash(request, template_id)

    def store(session: Session) -> None:
        now = datetime.now(UTC)
        session.add(
            Submission(
                username=who.username,
                idempotency_key=key,
                request_hash=digest,
                state="submitted",
                job_id=job_id,
                template_id=template_id,
                created_at=now,
                finished_at=now,
            )
        )

    about = f"job {job_id} of {who.username}"
    ctx.database.write_or_log(store, what="submission", about=about)
    return _result(built, job_id, replayed=False)


def definitely_refused(exc: BaseException) -> bool:
    """Did sbatch fail in a way that certainly created no job?

    Only Slurm's own refusal (invalid request, permission denied) or a refusal before
    sbatch ran (the run-as boundary, a missing upload) is certain. A timeout, a
    dropped connection or an answer we cannot read may come after slurmctld created
    the job.
    """
    if isinstance(exc, SlurmInvalidRequest | SlurmPermissionDenied | SlurmNotFound):
        return True
    return isinstance(exc, PortalError) and not isinstance(exc, SlurmError) and exc.status < 500


# --- one attempt per idempotency key (rows in ``submit_keys``) ----------------------


def _submit_once(
    ctx: SubmitContext,
    request: JobRequest,
    who: Principal,
    key: str,
    template_id: int | None,
    count_as: rate_limits.Action | None,
) -> SubmitResult:
    digest = request_hash(request, template_id)
    marker = key_marker(who.username, key)
    deadline = time.monotonic() + ctx.settings.slurm_timeout + 5
    # With several replicas, the attempt is this replica's: if it dies, a retry on
    # another takes over once its heartbeat ends (``submit_keys.take_over``).
    owner = default_replica_id(ctx.settings) if ctx.settings.replicated else None
    while True:
        row = claim(ctx.database, who.username, key, digest, template_id, owner)
        if isinstance(row, int):
            row_id = row  # a new key: ours, and a new submission to count
            break
        if row is None:
            continue  # its attempt was refused and forgot it meanwhile: claim it again
        if row.request_hash != digest:
            raise Conflict("This Idempotency-Key was used for a different request.")
        if row.state == "submitted" and row.job_id is not None:
            return _result(build(ctx, request, who, comment=marker), row.job_id, replayed=True)
        if take_over(ctx.database, row, attempt_limit(ctx.settings), owner):
            found = _reconcile(ctx, who, marker, row)
            if found is not None:
                record_job(ctx.database, row.id, found, who.username)
                return _result(build(ctx, request, who, comment=marker), found, replayed=True)
            row_id = row.id  # Slurm has no job for the key: ours to submit
            count_as = None  # the earlier attempt with this key was counted
            break
        # Another request is submitting with this key: wait for its row (no Slurm call).
        if time.monotonic() > deadline:
            raise Conflict("A submission with this Idempotency-Key is still running; retry.")
        time.sleep(0.25)
    try:
        built = build(ctx, request, who, comment=marker)
        _count(ctx, who, count_as)
    except BaseException:
        forget(ctx.database, row_id)  # refused (or failed) before sbatch ran: a retry may try again
        raise
    try:
        job_id = _run_sbatch(ctx, who, built)
    except Exception as exc:
        if definitely_refused(exc):
            forget(ctx.database, row_id)  # nothing was created: a retry may try again
            raise
        mark_unknown(ctx.database, row_id, exc)
        raise SubmissionUncertain(
            f"Slurm did not confirm the submission ({reason(exc)}), so the job may or may "
            "not exist. Retry with the same Idempotency-Key: the portal asks Slurm for the "
            "job first and never submits it twice."
        ) from exc
    record_job(ctx.database, row_id, job_id, who.username)
    return _result(built, job_id, replayed=False)


def _reconcile(ctx: SubmitContext, who: Principal, marker: str, row: Submission) -> int | None:
    """The job an earlier attempt with this key created, or None if Slurm has none.

    "None" is trusted only when Slurm says so twice, ``SETTLE_SECONDS`` apart:
    slurmctld, hung while the earlier sbatch waited, may still be working through that
    request when it answers the first question. If Slurm cannot be asked, or its
    accounting cannot tell, the key goes back to "unknown" and nothing is submitted.
    """
    try:
        match = ctx.adapter.job_with_comment(who.username, marker, since=row.created_at)
        if match.job_id is None and not match.unsure:
            time.sleep(SETTLE_SECONDS)
            match = ctx.adapter.job_with_comment(who.username, marker, since=row.created_at)
    except PortalError as exc:
        mark_unknown(ctx.database, row.id, exc)
        raise SubmissionUncertain(
            f"Slurm cannot tell yet whether an earlier attempt with this Idempotency-Key "
            f"created a job ({reason(exc)}); nothing was submitted again. Retry with the "
            "same key in a moment."
        ) from exc
    if match.job_id is None and match.unsure:
        mark_unknown(ctx.database, row.id, None)
        ids = ", ".join(map(str, match.unsure[:10]))
        raise Conflict(
            "An earlier attempt with this Idempotency-Key may have created a job, and "
            "Slurm's accounting cannot tell which (it does not store job comments: "
            f"AccountingStoreFlags=job_comment). Your jobs since then: {ids}. Check them; "
            "to submit anyway, use a new key."
        )
    return match.job_id
