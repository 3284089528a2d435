"""Interactive sessions: launch, follow, connect, extend, relaunch, delete.

Like a JupyterHub spawner, a session is ``start`` (``launch``), ``poll`` (the
``SessionTracker`` after each snapshot refresh) and ``stop`` (``delete``), with its
state persisted in the database so a restarted portal, or another replica, carries
on. A session is a Slurm job submitted *as the user* through the same path as any
job (``services.submit``): its script is rendered from the app's template into a
per-session folder in the user's home, written as the user.

The job writes ``connection.json`` (node, port, secrets, its TLS certificate) when
its server is up; the tracker reads it once, as the user, and stores the secrets
sealed (``secret_box``). The proxy then connects only to the host of the node Slurm
says runs the job (never a host named by a URL or by that file) and the port from the
file, for the session's owner, over mutual TLS (``node_tls``): it presents the
portal's certificate and accepts only the certificate the job wrote.

States: ``creating`` (row written, sbatch not answered yet) -> ``pending`` ->
``running`` (``ready`` once the connection file is read) -> ``completed`` |
``failed`` | ``cancelled``.

The job is submitted with an idempotency key derived from the session id
(``session_key``), so its comment carries the key's marker. When sbatch's outcome is
uncertain (slurmctld hung, the connection dropped), the row stays ``creating`` with no
job id and the launch answers at once; the tracker then asks Slurm for the job with
the same key (``submit``'s reconciliation) and records it, or submits it if Slurm has
none. Nothing else may start a job for such a row: relaunching it is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from hpcportal.db.models import InteractiveSession
from hpcportal.db.session import Database
from hpcportal.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PortalError,
    SlurmError,
    SlurmPermissionDenied,
    SubmissionUncertain,
)
from hpcportal.services import job_control, rate_limits, rfb
from hpcportal.services.apps import AppCatalog
from hpcportal.services.identity import Principal
from hpcportal.services.node_tls import NodeTLS, node_tls_for
from hpcportal.services.secret_box import SecretBox, SecretUnreadable, box_for
from hpcportal.services.submit import SubmitContext, submit_job
from hpcportal.services.submit_models import JobRequest, SubmitResult
from hpcportal.services.template_render import render
from hpcportal.services.user_paths import user_area
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

State = Literal["creating", "pending", "running", "completed", "failed", "cancelled"]
ACTIVE: frozenset[str] = frozenset({"creating", "pending", "running"})
SESSION_ID = re.compile(r"^[a-f0-9]{16}$")
SHARE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
LOG_TAIL_BYTES = 4096
#: Slurm's rule, said once (``may_extend``); shown as it is on the session page.
RUNNING_LIMIT_REFUSED = (
    "Slurm lets only its operators and administrators give a running job more time; "
    "the time limit was not changed."
)

STATUS_STATE: dict[JobStatus, State] = {
    JobStatus.QUEUED: "pending",
    JobStatus.QUEUED_HELD: "pending",
    JobStatus.SUSPENDED: "pending",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.TIMEOUT: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


class SessionView(BaseModel):
    """What the API and pages show of a session (never its secrets)."""

    id: str
    app_id: str
    app_name: str
    connection: str
    state: State
    ready: bool
    job_id: int | None
    node: str | None
    options: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    seconds_left: int | None
    error: str | None
    shared: bool
    view_url: str
    proxy_url: str | None


@dataclass(frozen=True)
class SessionContext:
    """What session use cases need from the running portal."""

    submit: SubmitContext
    catalog: AppCatalog

    @property
    def database(self) -> Database:
        return self.submit.database

    @property
    def box(self) -> SecretBox:
        """Seals sessions' secrets for the database (the portal's key file)."""
        return box_for(self.submit.settings.secret_key_path)

    @property
    def tls(self) -> NodeTLS:
        """The portal's TLS client identity for sessions' servers (beside the key)."""
        return node_tls_for(self.submit.settings.secret_key_path.parent)


@dataclass(frozen=True)
class Target:
    """Where the proxy may connect for one request, and with which secret."""

    session_id: str
    username: str
    host: str
    port: int
    secret: str
    view_only: bool
    connection: str
    base_url: str
    server_cert: str
    #: Presents the portal's certificate, accepts only ``server_cert`` (node_tls).
    tls: ssl.SSLContext


def base_url(session_id: str) -> str:
    return f"/node/{session_id}/"


def view(row: InteractiveSession, now: datetime | None = None) -> SessionView:
    now = now or datetime.now(UTC)
    left = None
    if row.state == "running" and row.ends_at is not None:
        left = max(0, int((row.ends_at - now).total_seconds()))
    ready = row.state == "running" and row.port is not None
    proxy = None
    if ready:
        proxy = f"/api/v1/sessions/{row.id}/vnc" if row.connection == "vnc" else base_url(row.id)
    return SessionView(
        id=row.id,
        app_id=row.app_id,
        app_name=row.app_name,
        connection=row.connection,
        state=cast(State, row.state),
        ready=ready,
        job_id=row.job_id,
        node=row.node,
        options=dict(row.options),
        created_at=row.created_at,
        started_at=row.started_at,
        ends_at=row.ends_at,
        ended_at=row.ended_at,
        seconds_left=left,
        error=row.error,
        shared=row.share_token_hash is not None,
        view_url=f"/sessions/{row.id}",
        proxy_url=proxy,
    )


# --- launching --------------------------------------------------------------------------


def job_request(app_id: str, options: dict[str, int | str], script: str, folder: str) -> JobRequest:
    """The resources as sbatch options; output and working folder in the session folder.

    Only the app's id, the stored options and the written script go in, so the tracker
    rebuilds the very same request (same idempotency hash) from the row and ``job.sh``.
    """
    gpus = options.get("gpus")
    memory = options.get("memory_gb")
    hours = options.get("hours")
    cpus = options.get("cpus")
    return JobRequest(
        script=script,
        name=f"hpcportal-{app_id}",
        partition=str(options["partition"]) if "partition" in options else None,
        cpus_per_task=int(cpus) if cpus is not None else None,
        memory=f"{memory}G" if memory is not None else None,
        gpus=int(gpus) if gpus else None,
        time_limit=f"{int(hours)}:00:00" if hours is not None else None,
        work_dir=folder,
        output=f"{folder}/output.log",
    )


def launch(ctx: SessionContext, who: Principal, app_id: str, raw: dict[str, object]) -> SessionView:
    """Render, write and submit the app's job as ``who``; the row exists before sbatch.

    Counts against ``who``'s session launch limit (once the options are valid, before
    anything is written); the job itself then does not count as a job submission.
    """
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
        log.warning("session %s: Slurm did not confirm its job yet: %s", session_id, exc.message)
        return get_session(ctx, who, session_id)
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
        shown = view(row)
    if ended:
        _cancel_late_job(ctx, who, job_id)
    return shown


def _cancel_late_job(ctx: SessionContext, who: Principal, job_id: int) -> None:
    """The session ended before sbatch answered: its job must not run on unseen."""
    try:
        job_control.control(ctx.submit.slurm, who, str(job_id), "cancel")
    except PortalError as exc:
        log.warning("job %s outlived its ended session: %s", job_id, exc.message)


def session_key(session_id: str) -> str:
    """The idempotency key of the session's job (its comment carries its marker)."""
    return f"session:{session_id}"


def waiting_for_slurm(row: InteractiveSession) -> bool:
    """Launched, but Slurm has not confirmed a job yet: one may exist all the same."""
    return row.state == "creating" and row.job_id is None


def _submit(
    ctx: SessionContext,
    who: Principal,
    folder: str,
    script: str,
    request: JobRequest,
    key: str,
) -> int:
    runas = ctx.submit.runas
    runas.call(who.username, {"op": "mkdir", "path": folder, "mode": 0o700, "parents": True})
    data = script.encode()
    runas.call(
        who.username,
        {"op": "write-file", "path": f"{folder}/job.sh", "size": len(data), "mode": 0o700},
        payload=data,
    )
    result = submit_job(ctx.submit, request, who, idempotency_key=key, count_as=None)
    assert isinstance(result, SubmitResult)
    return result.job_id


def _finish(ctx: SessionContext, session_id: str, state: State, error: str | None) -> None:
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is not None:
            end_row(row, state, error)


def end_row(row: InteractiveSession, state: State, error: str | None) -> None:
    now = datetime.now(UTC)
    row.state = state
    row.error = error
    row.ended_at = row.ended_at or now
    row.updated_at = now
    row.secret = row.view_secret = None
    row.share_token_hash = None


# --- secrets at rest -------------------------------------------------------------------


def _place(session_id: str, column: str) -> str:
    """What a sealed value is bound to: copied to another row or column, it won't open."""
    return f"interactive_sessions:{session_id}:{column}"


def seal_secrets(
    box: SecretBox, row: InteractiveSession, secret: str, view_secret: str | None
) -> None:
    """Store the session's secrets sealed, each bound to this session and column."""
    row.secret = box.seal(secret, _place(row.id, "secret"))
    row.view_secret = (
        box.seal(view_secret, _place(row.id, "view_secret")) if view_secret is not None else None
    )


def open_secret(box: SecretBox, row: InteractiveSession, *, view_only: bool) -> str | None:
    """The plaintext of the row's (view-only) secret; None if there is none.

    Raises ``SecretUnreadable`` for a value this key does not open (another key file,
    or a value altered in the database)."""
    column = "view_secret" if view_only else "secret"
    sealed = row.view_secret if view_only else row.secret
    if sealed is None:
        return None
    return box.open(sealed, _place(row.id, column))


def forget_connection(row: InteractiveSession) -> None:
    """Make the tracker read the session's connection file again (and seal anew)."""
    row.port = None
    row.secret = row.view_secret = None
    row.server_cert = None
    row.updated_at = datetime.now(UTC)


# --- reading ----------------------------------------------------------------------------


def _owned(session: Session, who: Principal, session_id: str) -> InteractiveSession:
    if not SESSION_ID.fullmatch(session_id):
        raise NotFound("There is no such session.")
    row = session.get(InteractiveSession, session_id)
    if row is None:
        raise NotFound("There is no such session.")
    if row.username != who.username:
        raise Forbidden("This session belongs to someone else.")
    return row


def list_sessions(
    ctx: SessionContext, who: Principal, *, active_only: bool = False
) -> list[SessionView]:
    with ctx.database.session() as session:
        query = select(InteractiveSession).where(InteractiveSession.username == who.username)
        if active_only:
            query = query.where(InteractiveSession.state.in_(sorted(ACTIVE)))
        rows = session.scalars(query.order_by(InteractiveSession.created_at.desc()).limit(200))
        now = datetime.now(UTC)
        return [view(r, now) for r in rows]


def get_session(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    with ctx.database.session() as session:
        return view(_owned(session, who, session_id))


def output_tail(ctx: SessionContext, who: Principal, session_id: str) -> str:
    """The end of the job's log (``output.log``), read as the user; '' if there is none."""
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        folder = row.session_dir
    return log_tail(ctx, who.username, folder)


def log_tail(ctx: SessionContext, username: str, folder: str) -> str:
    path = f"{folder}/output.log"
    try:
        info, _ = ctx.submit.runas.read_file(username, path, offset=0, length=0)
        size = int(info.get("size", 0))
        _, data = ctx.submit.runas.read_file(
            username, path, offset=max(0, size - LOG_TAIL_BYTES), length=LOG_TAIL_BYTES
        )
    except PortalError:
        return ""
    return data.decode("utf-8", "replace")


# --- stopping, extending, relaunching -------------------------------------------------


def delete(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """Cancel the job as the user (Slurm ends every process of it) and end the session."""
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        job_id, active = row.job_id, row.state in ACTIVE
    if active and job_id is not None:
        try:
            job_control.control(ctx.submit.slurm, who, str(job_id), "cancel")
        except SlurmError as exc:
            # A job that already ended is fine: the session ends all the same.
            if not job_control.already_ended(exc):
                raise
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        if row.state in ACTIVE:
            end_row(row, "cancelled", None)
        return view(row)


def may_extend(ctx: SessionContext, who: Principal, state: str) -> bool:
    """Would Slurm let ``who`` raise the time limit of their session's job now?

    slurmctld (``_update_job``, the same from 22.05 to 26.05) lets a job's owner raise
    its limit only while it is pending, up to the partition's MaxTime; a running job's
    only root, its SlurmUser and AdminLevel Operator or Administrator
    (``raises_any_limit``). No site setting widens that.
    """
    if state == "pending":
        return True
    return state == "running" and raises_any_limit(ctx, who)


def raises_any_limit(ctx: SessionContext, who: Principal) -> bool:
    """Is ``who`` a Slurm operator or administrator (``sacctmgr``'s AdminLevel, cached)?

    Root and the SlurmUser never log in (below ``min_uid``); roles that cannot be read
    privilege nobody, as everywhere in the portal.
    """
    try:
        return ctx.submit.adapter.roles().is_operator(who.username)
    except PortalError as exc:
        log.warning("Slurm roles unreadable, extending is offered to nobody: %s", exc.message)
        return False


def extend(ctx: SessionContext, who: Principal, session_id: str, hours: int) -> SessionView:
    """Ask Slurm, as the user, for ``hours`` more, when Slurm would allow it
    (``may_extend``) and the partition's MaxTime allows the new limit."""
    if not 1 <= hours <= 24:
        raise InvalidInput("Extend by 1 to 24 hours.")
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        if row.state not in ("pending", "running") or row.job_id is None:
            raise Conflict("Only a pending or running session can be extended.")
        job_id, state = row.job_id, row.state
    if not may_extend(ctx, who, state):
        raise Forbidden(RUNNING_LIMIT_REFUSED)
    job = ctx.submit.adapter.job(str(job_id))
    if job is not None and job.time_limit_minutes is not None:
        partition = next(
            (p for p in ctx.submit.adapter.partitions() if p.name == job.partition), None
        )
        limit = partition.max_time_minutes if partition is not None else None
        if limit is not None and job.time_limit_minutes + hours * 60 > limit:
            raise Conflict(
                f"Partition {job.partition} allows at most {limit // 60} h {limit % 60} min; "
                f"this session already has {job.time_limit_minutes // 60} h "
                f"{job.time_limit_minutes % 60} min."
            )
    try:
        ctx.submit.slurm.add_time(str(job_id), hours * 60, as_user=who.username)
    except SlurmPermissionDenied as exc:
        # The job started since the page looked, or the roles changed.
        raise Forbidden(RUNNING_LIMIT_REFUSED) from exc
    job = ctx.submit.adapter.job(str(job_id))
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        if job is not None and job.end_time is not None:
            row.ends_at = job.end_time
            row.updated_at = datetime.now(UTC)
        return view(row)


def relaunch(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """A new session of the same app with the same settings."""
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        if waiting_for_slurm(row):
            raise Conflict(
                "This session is still waiting for Slurm to confirm its job, which may "
                "exist already; relaunching now could start a second one. Wait for it "
                "(the page follows it), or end it first."
            )
        app_id, options = row.app_id, dict(row.options)
    return launch(ctx, who, app_id, options)


# --- sharing (view-only VNC) -----------------------------------------------------------


def token_hash(token: str) -> str:
    """What is stored of a share link's token (and what its viewers' cookies name)."""
    return hashlib.sha256(token.encode()).hexdigest()


def share(ctx: SessionContext, who: Principal, session_id: str) -> str:
    """A new view-only link token (a previous link stops working)."""
    token = secrets.token_urlsafe(32)
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        if row.connection != "vnc":
            raise Conflict("Only desktop (VNC) sessions can be shared view-only.")
        if row.state not in ACTIVE:
            raise Conflict("The session has ended.")
        row.share_token_hash = token_hash(token)
        row.updated_at = datetime.now(UTC)
    return token


def revoke_share(ctx: SessionContext, who: Principal, session_id: str) -> SessionView:
    """Forget the link and change the view-only password, so no viewer reconnects."""
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        row.share_token_hash = None
        row.updated_at = datetime.now(UTC)
    rotate_passwords(ctx, session_id, view_only=True)
    return get_session(ctx, who, session_id)


# --- connecting (used by the proxies) ---------------------------------------------------


def target(ctx: SessionContext, who: Principal, session_id: str, connection: str) -> Target:
    """Where ``who`` may connect for this session: only the owner, only while running."""
    with ctx.database.session() as session:
        row = _owned(session, who, session_id)
        return _target(ctx, row, connection, view_only=False)


def shared_target(ctx: SessionContext, digest: str | None) -> Target:
    """The view-only target of the share link whose token hashes to ``digest`` (any
    logged-in person who opened the link: ``services.share_links``)."""
    if digest is None:
        raise NotFound("This share link is not valid (it may have been revoked).")
    with ctx.database.session() as session:
        row = session.scalars(
            select(InteractiveSession).where(InteractiveSession.share_token_hash == digest)
        ).first()
        if row is None:
            raise NotFound("This share link is not valid (it may have been revoked).")
        return _target(ctx, row, "vnc", view_only=True)


def share_still_valid(ctx: SessionContext, session_id: str, digest: str) -> bool:
    """Whether a viewer's link still names this running session (checked while viewing)."""
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        return row is not None and row.state == "running" and row.share_token_hash == digest


def _target(
    ctx: SessionContext, row: InteractiveSession, connection: str, *, view_only: bool
) -> Target:
    if row.connection != connection:
        raise NotFound(f"This session has no {connection} connection.")
    if row.state != "running" or row.host is None or row.port is None:
        raise Conflict("The session is not running yet (or has ended).")
    try:
        secret = open_secret(ctx.box, row, view_only=view_only)
    except SecretUnreadable as exc:
        # Sealed under another key (the key file was replaced) or altered: read the
        # job's connection file again rather than fail for good.
        log.warning("session %s: its stored secret does not open (%s)", row.id, exc)
        forget_connection(row)
        session = object_session(row)
        if session is not None:
            session.commit()  # kept although this request is refused
        raise Conflict(
            "The portal is reconnecting to this session; try again in a few seconds."
        ) from None
    if secret is None or row.server_cert is None:
        raise Conflict("The session is not running yet (or has ended).")
    return Target(
        row.id,
        row.username,
        row.host,
        row.port,
        secret,
        view_only,
        row.connection,
        base_url(row.id),
        row.server_cert,
        ctx.tls.context(row.server_cert),
    )


def rotate_passwords(ctx: SessionContext, session_id: str, *, view_only: bool = False) -> bool:
    """Write new VNC passwords to the session's password file, as its owner.

    TigerVNC reads that file at each new connection, so the old password stops
    working for anyone who saw it. Rotating the view-only one keeps the full one.

    Several connections (tabs, replicas) may rotate at once, so the database row is
    claimed first with a compare-and-set on the current (sealed) passwords: only the
    winner writes the file, and the file never holds other passwords than the row says
    (a failed write puts the old ones back). Returns whether this call rotated.
    """
    box = ctx.box
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is None or row.passwd_file is None or row.secret is None or row.view_secret is None:
            return False
        old_sealed = (row.secret, row.view_secret)
        try:
            full = open_secret(box, row, view_only=False)
            view = open_secret(box, row, view_only=True)
        except SecretUnreadable:
            return False  # the next connection re-reads the session (see _target)
        assert full is not None and view is not None
        username, path = row.username, row.passwd_file
    new = (full, rfb.new_password()) if view_only else (rfb.new_password(), view)
    new_sealed = (
        box.seal(new[0], _place(session_id, "secret")),
        box.seal(new[1], _place(session_id, "view_secret")),
    )
    if not _swap_secrets(ctx, session_id, old_sealed, new_sealed):
        return False  # someone else rotated just now: their passwords stand
    data = rfb.password_file(*new)
    request = {"op": "write-file", "path": path, "size": len(data), "mode": 0o600, "replace": True}
    try:
        ctx.submit.runas.call(username, request, payload=data)
    except Exception:
        _swap_secrets(ctx, session_id, new_sealed, old_sealed)
        raise
    return True


def _swap_secrets(
    ctx: SessionContext, session_id: str, old: tuple[str, str], new: tuple[str, str]
) -> bool:
    with ctx.database.session() as session:
        result = session.execute(
            update(InteractiveSession)
            .where(
                InteractiveSession.id == session_id,
                InteractiveSession.secret == old[0],
                InteractiveSession.view_secret == old[1],
            )
            .values(secret=new[0], view_secret=new[1], updated_at=datetime.now(UTC))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
