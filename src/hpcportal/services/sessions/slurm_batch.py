"""Interactive sessions as Slurm batch jobs: the one ``SessionBackend`` today.

A session is a Slurm job submitted *as the user* through the same path as any job
(``services.submit``): its script is rendered from the app's template into a
per-session folder in the user's home, written as the user. ``start`` is ``launch``,
``poll`` the ``SessionTracker`` (after each snapshot refresh), ``stop`` is ``delete``.

The job writes ``connection.json`` (node, port, secrets, its TLS certificate) when
its server is up; the tracker reads it once, as the user, and stores the secrets
sealed (``sealing``). The proxy then connects only to the host of the node Slurm
says runs the job and the port from the file, for the session's owner, over mutual
TLS (``access``).

The job is submitted with an idempotency key derived from the session id
(``batch_job.session_key``). When sbatch's outcome is uncertain (slurmctld hung, the
connection dropped), the row stays ``creating`` with no job id and the launch answers
at once; the tracker then asks Slurm for the job with the same key (``confirm``) and
records it, or submits it if Slurm has none. Nothing else may start a job for such a
row: relaunching it is refused.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

from hpcportal.db.models import InteractiveSession
from hpcportal.errors import Conflict, PortalError, SlurmError, SubmissionUncertain
from hpcportal.runas import AsUser
from hpcportal.services import job_control, rate_limits
from hpcportal.services.identity import Principal
from hpcportal.services.sessions.batch_job import job_request, session_key, waiting_for_slurm
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import (
    ACTIVE,
    SessionBackend,
    SessionState,
    State,
    end_row,
)
from hpcportal.services.sessions.tracker import SessionTracker
from hpcportal.services.sessions.views import SessionView, base_url, owned, view
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.submit import submit_job
from hpcportal.services.submit_models import JobRequest, SubmitResult
from hpcportal.services.template_render import render
from hpcportal.services.user_paths import user_area

log = logging.getLogger(__name__)


class SlurmBatchBackend:
    """``SessionBackend`` over Slurm batch jobs, state in ``interactive_sessions``."""

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx

    def start(self, who: Principal, app_id: str, raw: dict[str, object]) -> SessionState:
        """Render, write and submit the app's job as ``who``; the row exists before sbatch.

        Counts against ``who``'s session launch limit (once the options are valid, before
        anything is written); the job itself then does not count as a job submission.
        """
        ctx = self.ctx
        app = ctx.catalog.get(app_id, who)
        options = app.options(raw)
        rate_limits.count(ctx.database, ctx.submit.settings, who, "session.launch")
        session_id = secrets.token_hex(8)
        root = user_area(ctx.submit.settings, who, ctx.submit.settings.session_root)
        folder = f"{root}/{session_id}"
        session_values = {
            "session_id": session_id,
            "session_dir": folder,
            "connection_file": f"{folder}/connection.json",
            "base_url": base_url(session_id),
            "portal_client_cert": ctx.tls.identity.cert_base64,
        }
        script = render(app.script, app.script_values(options, session_values))
        request = job_request(app.id, options, script, folder)
        now = datetime.now(UTC)
        with ctx.database.session() as session:
            session.add(
                InteractiveSession(
                    id=session_id,
                    username=who.username,
                    app_id=app.id,
                    app_name=app.definition.name,
                    connection=app.definition.connection,
                    state="creating",
                    options=options,
                    session_dir=folder,
                    created_at=now,
                    updated_at=now,
                )
            )
        try:
            job_id = _submit(ctx, who, folder, script, request, session_key(session_id))
        except SubmissionUncertain as exc:
            # The job may exist: keep the row waiting for the tracker to ask Slurm.
            log.warning(
                "session %s: Slurm did not confirm its job yet: %s", session_id, exc.message
            )
            return self._read(session_id)
        except PortalError as exc:
            _finish(ctx, session_id, "failed", f"The launch failed: {exc.message}")
            raise
        with ctx.database.session() as session:
            row = session.get(InteractiveSession, session_id)
            assert row is not None
            row.job_id = job_id
            ended = row.state != "creating"  # deleted (or given up on) while sbatch ran
            if not ended:
                row.state = "pending"
            row.updated_at = datetime.now(UTC)
            shown = SessionState.of(row)
        if ended:
            _cancel_late_job(ctx, who, job_id)
        return shown

    def poll(self, snap: ClusterSnapshot) -> list[SessionState]:
        """The tracker's pass over every active session (``tracker``)."""
        return SessionTracker(self.ctx).poll(snap)

    def stop(self, who: Principal, session_id: str) -> SessionState:
        """Cancel the job as the user (Slurm ends every process of it) and end the session."""
        ctx = self.ctx
        with ctx.database.session() as session:
            row = owned(session, who, session_id)
            job_id, active = row.job_id, row.state in ACTIVE
        if active and job_id is not None:
            try:
                job_control.control(ctx.submit.slurm, who, str(job_id), "cancel")
            except SlurmError as exc:
                # A job that already ended is fine: the session ends all the same.
                if not job_control.already_ended(exc):
                    raise
        with ctx.database.session() as session:
            row = owned(session, who, session_id)
            if row.state in ACTIVE:
                end_row(row, "cancelled", None)
            return SessionState.of(row)

    def state(self, session_id: str) -> SessionState | None:
        with self.ctx.database.session() as session:
            row = session.get(InteractiveSession, session_id)
            return SessionState.of(row) if row is not None else None

    def _read(self, session_id: str) -> SessionState:
        found = self.state(session_id)
        assert found is not None  # written by this launch a moment ago
        return found


def launch(ctx: SessionContext, who: Principal, app_id: str, raw: dict[str, object]) -> SessionView:
    """Start a session (``SlurmBatchBackend.start``); what its page shows."""
    return view(SlurmBatchBackend(ctx).start(who, app_id, raw))


def delete(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """Stop a session (``SlurmBatchBackend.stop``); what its page shows."""
    return view(SlurmBatchBackend(ctx).stop(who, session_id))


def _cancel_late_job(ctx: SessionContext, who: Principal, job_id: int) -> None:
    """The session ended before sbatch answered: its job must not run on unseen."""
    try:
        job_control.control(ctx.submit.slurm, who, str(job_id), "cancel")
    except PortalError as exc:
        log.warning("job %s outlived its ended session: %s", job_id, exc.message)


def _submit(
    ctx: SessionContext,
    who: Principal,
    folder: str,
    script: str,
    request: JobRequest,
    key: str,
) -> int:
    helper = AsUser(ctx.submit.runas, who.username)
    root, _, name = folder.rpartition("/")  # session_root and the session's own folder
    helper.make_folder(root, name, mode=0o700)
    helper.write_file(folder, "job.sh", script.encode(), mode=0o700)
    result = submit_job(ctx.submit, request, who, idempotency_key=key, count_as=None)
    assert isinstance(result, SubmitResult)
    return result.job_id


def _finish(ctx: SessionContext, session_id: str, state: State, error: str | None) -> None:
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is not None:
            end_row(row, state, error)


def relaunch(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """A new session of the same app with the same settings."""
    with ctx.database.session() as session:
        row = owned(session, who, session_id)
        if waiting_for_slurm(row):
            raise Conflict(
                "This session is still waiting for Slurm to confirm its job, which may "
                "exist already; relaunching now could start a second one. Wait for it "
                "(the page follows it), or end it first."
            )
        app_id, options = row.app_id, dict(row.options)
    return launch(ctx, who, app_id, options)


def backend(ctx: SessionContext) -> SessionBackend:
    """This portal's session backend: Slurm batch jobs (checked against the contract)."""
    return SlurmBatchBackend(ctx)
