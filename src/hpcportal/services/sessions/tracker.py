"""Following interactive sessions from the shared snapshot (the spawner's ``poll``).

After each snapshot refresh the tracker moves every active session along: jobs
still in the snapshot give their state directly, the few that left it are looked up
together in one (cached) accounting query, so watching many sessions costs no
Slurm call per session. The job's connection file is read as the user once, when
the job runs (again only if the portal forgot what it read: a database from before
secrets were sealed, or a key file replaced); its log once, when it fails.

What the file holds is stored sealed (``secret_box``). A VNC session's passwords are
changed right away (its password file rewritten as the user, as after each
connection), so those in ``connection.json`` open nothing by the time anyone could
read them, and reading the file again never brings back a stale password.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.models import InteractiveSession
from hpcportal.errors import PortalError, SlurmError
from hpcportal.runas import AsUser
from hpcportal.services import job_control, rfb
from hpcportal.services.node_tls import server_cert_pem
from hpcportal.services.notifications.detector import Delivery
from hpcportal.services.sessions.confirm import cancel_strays, confirm_launches
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import (
    ACTIVE,
    STATUS_STATE,
    SessionState,
    State,
    end_row,
)
from hpcportal.services.sessions.notices import ending_soon, notices
from hpcportal.services.sessions.sealing import in_folder, seal_secrets
from hpcportal.services.sessions.views import SessionView, log_tail, view
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

CONNECTION_MAX_BYTES = 64 * 1024
NO_TLS = (
    "The session's server offers no TLS certificate (tls_cert in connection.json): "
    "it was started before this portal version, or by an app that does not serve "
    "mutual TLS. The portal connects to sessions only over mutual TLS; relaunch the "
    "session (or ask the site to update the app)."
)


class SessionTracker:
    """Moves active sessions along from each snapshot: no Slurm call per session.

    Jobs still in the snapshot give their state directly; the few that left it are
    looked up together in one (cached) accounting query. The connection file and the
    log are read as the user once, when the job starts or fails.
    """

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx
        #: With several replicas: the leader's fence (``ha.Leadership.fence``), checked
        #: last in each pass's transaction (the row lock it takes is then held only
        #: for the commit), so a replaced leader's pass changes nothing.
        self.fence: Callable[[Session], None] | None = None
        #: Pushes the bell rows a pass stored (ready, ending soon) to their owners'
        #: sockets (``LiveHub.deliver``), once the pass's transaction has committed.
        self.deliver: Callable[[list[Delivery]], None] | None = None

    def reconcile(self, snap: ClusterSnapshot) -> list[tuple[str, SessionView]]:
        """``poll``, as ``(owner, view)`` of each session that changed (for its pages)."""
        return [(state.username, view(state)) for state in self.poll(snap)]

    def poll(self, snap: ClusterSnapshot) -> list[SessionState]:
        """Update every active session; return the states of those that changed.

        Sessions whose launch Slurm did not confirm come first (``confirm``: Slurm is
        asked about each one, outside this pass's transaction).
        """
        changed = confirm_launches(self.ctx) + cancel_strays(self.ctx)
        with self.ctx.database.session() as session:
            rows = list(
                session.scalars(
                    select(InteractiveSession).where(InteractiveSession.state.in_(sorted(ACTIVE)))
                )
            )
            missing = [
                r for r in rows if r.job_id is not None and str(r.job_id) not in snap.jobs_by_id
            ]
            finished = self._accounting(missing, snap)
            ready: list[InteractiveSession] = []
            for row in rows:
                before = (row.state, row.port, row.ends_at, row.error)
                self._step(row, snap, finished)
                if (row.state, row.port, row.ends_at, row.error) != before:
                    row.updated_at = datetime.now(UTC)
                    changed.append(SessionState.of(row))
                    if before[1] is None and row.port is not None and row.state == "running":
                        ready.append(row)  # its connection just became reachable
            now = datetime.now(UTC)
            minutes = self.ctx.submit.settings.notify_time_left_minutes
            ending = [r for r in rows if r.port is not None and ending_soon(r, now, minutes)]
            deliveries = notices(session, ready, ending, now)
            if self.fence is not None:
                self.fence(session)
        if deliveries and self.deliver is not None:
            self.deliver(deliveries)
        return changed

    def _accounting(
        self, rows: Sequence[InteractiveSession], snap: ClusterSnapshot
    ) -> dict[int, JobStatus]:
        """Final states of jobs that left the queue, in one sacct call."""
        settled = [r for r in rows if r.updated_at < snap.taken_at - timedelta(seconds=5)]
        if not settled:
            return {}
        start = min(r.created_at for r in settled) - timedelta(hours=1)
        try:
            records = self.ctx.submit.adapter.accounting(
                start,
                datetime.now(UTC) + timedelta(hours=1),
                job_ids=[str(r.job_id) for r in settled],
            )
        except SlurmError as exc:
            log.warning("sessions: accounting unavailable: %s", exc.message)
            return {}
        found = {rec.job_id: rec.status for rec in records}
        # A job in neither place was purged long ago: it has ended.
        return {r.job_id: found.get(r.job_id, JobStatus.COMPLETED) for r in settled if r.job_id}

    def _step(
        self, row: InteractiveSession, snap: ClusterSnapshot, finished: dict[int, JobStatus]
    ) -> None:
        now = datetime.now(UTC)
        if row.job_id is None:
            return  # waiting for Slurm to confirm its job: confirm_launches
        job = snap.jobs_by_id.get(str(row.job_id))
        status = job.status if job is not None else finished.get(row.job_id)
        if status is None:
            return
        state = STATUS_STATE.get(status)
        if state is None:
            return
        if state in ("completed", "failed", "cancelled"):
            self._ended(row, state, status)
        elif state == "running" and job is not None:
            self._running(row, job, snap, now)
        else:
            row.state = state

    def _ended(self, row: InteractiveSession, state: State, status: JobStatus) -> None:
        end = ending(state, status, connected=row.port is not None)
        error = end.reason
        if end.show_log:
            tail = log_tail(self.ctx, row.username, row.session_dir).strip()
            error = f"{end.reason}. Its log ends with:\n{tail}" if tail else f"{end.reason}."
        end_row(row, end.state, error)

    def _running(
        self, row: InteractiveSession, job: Job, snap: ClusterSnapshot, now: datetime
    ) -> None:
        row.state = "running"
        row.started_at = row.started_at or job.start_time or now
        row.ends_at = job.end_time
        if row.port is not None:
            return
        node_name = job.batch_host or next(iter(job.node_names), None)
        node = snap.nodes_by_name.get(node_name) if node_name else None
        info = self._connection(row)
        if info is None or node_name is None:
            waited = (now - (row.started_at or now)).total_seconds()
            if waited > self.ctx.submit.settings.session_start_timeout:
                self._give_up(row)
            return
        if info["server_cert"] is None:
            self._cancel(row, NO_TLS)
            return
        row.node = node_name
        row.host = (node.address or node.hostname or node.name) if node else node_name
        row.port = info["port"]
        row.server_cert = info["server_cert"]
        row.passwd_file = info.get("passwd_file")
        secret, view_secret = info["secret"], info.get("view_secret")
        if row.passwd_file is not None and view_secret is not None:
            secret, view_secret = self._new_passwords(row, (secret, view_secret))
        seal_secrets(self.ctx.box, row, secret, view_secret)

    def _new_passwords(self, row: InteractiveSession, old: tuple[str, str]) -> tuple[str, str]:
        """Rewrite the session's VNC password file as the user with new passwords; the
        old ones (those of ``connection.json``) if that fails."""
        assert row.passwd_file is not None
        new = (rfb.new_password(), rfb.new_password())
        data = rfb.password_file(*new)
        helper = AsUser(self.ctx.submit.runas, row.username)
        name = in_folder(row.passwd_file, row.session_dir)
        try:
            helper.write_file(row.session_dir, name, data, mode=0o600, replace=True)
        except PortalError as exc:
            log.warning("session %s: could not change its passwords: %s", row.id, exc.message)
            return old
        return new

    def _connection(self, row: InteractiveSession) -> dict[str, Any] | None:
        """The job's connection file, read as the user and checked; None until written."""
        try:
            _, data = AsUser(self.ctx.submit.runas, row.username).read_range(
                row.session_dir, "connection.json", offset=0, length=CONNECTION_MAX_BYTES
            )
        except PortalError:
            return None
        return parse_connection(data, row.connection, row.session_dir)

    def _give_up(self, row: InteractiveSession) -> None:
        tail = log_tail(self.ctx, row.username, row.session_dir).strip()
        seconds = self.ctx.submit.settings.session_start_timeout
        message = f"The app did not start within {seconds:g} s."
        self._cancel(row, message, tail)

    def _cancel(self, row: InteractiveSession, message: str, tail: str = "") -> None:
        """Cancel the session's job as the user and end the session ``failed``."""
        try:
            self.ctx.submit.slurm.cancel(str(row.job_id), as_user=row.username)
        except SlurmError as exc:
            if not job_control.already_ended(exc):
                message += f" Cancelling its job failed: {exc.message}"
        except PortalError as exc:
            message += f" Cancelling its job failed: {exc.message}"
        end_row(row, "failed", f"{message} Its log ends with:\n{tail}" if tail else message)


@dataclass(frozen=True, slots=True)
class Ending:
    """How a session ends when its job has: its final state, and why (None: no error).

    With ``show_log`` the reason is a sentence the end of the job's log follows."""

    state: State
    reason: str | None
    show_log: bool = False


def ending(state: State, status: JobStatus, *, connected: bool) -> Ending:
    """The end of a session whose job ended in ``status`` (``state`` in the contract's
    terms); ``connected``: the portal had read its connection file. A job that ended
    before its app was ready failed, whatever Slurm says of it."""
    if state == "failed":
        return Ending("failed", "The session's job failed", show_log=True)
    if state == "completed" and not connected:
        return Ending("failed", "The session's job ended before its app was ready", show_log=True)
    if status == JobStatus.TIMEOUT:
        return Ending(state, "The session reached its time limit.")
    return Ending(state, None)


def parse_connection(data: bytes, connection: str, folder: str) -> dict[str, Any] | None:
    """The fields the portal uses from ``connection.json``; None if it is not usable.

    ``server_cert`` is the PEM of its ``tls_cert``, None when it has none (or not a
    certificate): the tracker then ends the session, since the proxy needs it."""
    try:
        raw = json.loads(data)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("type") != connection:
        return None
    port = raw.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    key = "password" if connection == "vnc" else "token"
    secret = raw.get(key)
    if not isinstance(secret, str) or not secret or len(secret) > 512:
        return None
    info: dict[str, Any] = {
        "port": port,
        "secret": secret,
        "server_cert": server_cert_pem(raw.get("tls_cert")),
    }
    if connection == "vnc":
        view_secret = raw.get("view_password")
        passwd_file = raw.get("passwd_file")
        if isinstance(view_secret, str) and view_secret:
            info["view_secret"] = view_secret
        if isinstance(passwd_file, str) and _inside(passwd_file, folder):
            info["passwd_file"] = passwd_file
    return info


def _inside(path: str, folder: str) -> bool:
    """A plain path within the session folder (the file the portal may rewrite)."""
    return path.startswith(folder + "/") and "/../" not in path and "\x00" not in path
