"""Sessions whose launch Slurm did not confirm: find their job, or submit it once.

A launch submits its job with the session's idempotency key (``batch_job.session_key``).
When sbatch's outcome is uncertain (slurmctld hung, the connection dropped) the row
stays ``creating`` with no job id and the key's submission row ``unknown``: the job
may exist. The tracker calls ``confirm_launches`` on every pass; for each such row it
runs the same idempotent submit as a retried ``POST /jobs`` with that key, which asks
Slurm for the job carrying the key's marker first and submits only when Slurm says
twice there is none. The job found (or made) is recorded and the session goes on.

If Slurm cannot tell for longer than ``session_start_timeout``, the session fails
with a message saying so, but the key's row stays ``unknown``: ``cancel_strays`` keeps
asking Slurm about ended sessions (failed, or deleted while waiting) that may still
have a job, and cancels one that turns up, as its owner. So no job outlives its
session unseen, and none is ever submitted twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, literal, select, update
from sqlalchemy.orm import Session

from hpcportal.db.models import InteractiveSession, Submission
from hpcportal.errors import Conflict, PortalError, SlurmError
from hpcportal.runas import AsUser
from hpcportal.services import job_control
from hpcportal.services.identity import Principal, lookup_principal
from hpcportal.services.sessions.batch_job import job_request, session_key, waiting_for_slurm
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.contract import ACTIVE, SessionState, end_row
from hpcportal.services.submit import definitely_refused, submit_job
from hpcportal.services.submit_keys import attempt_limit, key_marker
from hpcportal.services.submit_models import SubmitResult

log = logging.getLogger(__name__)

#: A row still ``creating`` with no key row after this long lost its launch (a crash
#: before sbatch ran: no job can carry its key).
CREATING_SECONDS = 120.0
#: The rendered ``job.sh`` is read back at most this long.
SCRIPT_MAX_BYTES = 4 * 1024 * 1024
#: Ended sessions are checked for a stray job this long after they ended.
STRAY_WINDOW = timedelta(days=1)
#: Key rows whose outcome Slurm has not settled yet.
UNSETTLED = ("unknown", "submitting")


@dataclass(frozen=True)
class _Waiting:
    """What confirming one waiting session needs (read, then the database let go)."""

    id: str
    username: str
    app_id: str
    options: dict[str, int | str]
    folder: str
    created_at: datetime


def _key_row(session: Session, username: str, session_id: str) -> Submission | None:
    return session.scalars(
        select(Submission).where(
            Submission.username == username,
            Submission.idempotency_key == session_key(session_id),
        )
    ).one_or_none()


def confirm_launches(ctx: SessionContext) -> list[SessionState]:
    """Record the job of every session Slurm has not confirmed, or fail it in the end.

    Slurm is asked (and sbatch run) outside any database transaction of the tracker,
    each session's outcome written in its own, only if the row is still waiting.
    """
    with ctx.database.session() as session:
        rows = session.scalars(
            select(InteractiveSession).where(
                InteractiveSession.state == "creating", InteractiveSession.job_id.is_(None)
            )
        ).all()
        waiting = [
            _Waiting(r.id, r.username, r.app_id, dict(r.options), r.session_dir, r.created_at)
            for r in rows
        ]
    changed: list[SessionState] = []
    for row in waiting:
        outcome = _confirm(ctx, row)
        if outcome is None:
            continue
        with ctx.database.session() as session:
            current = session.get(InteractiveSession, row.id)
            if current is None:
                continue
            # Deleted while Slurm was asked (not merely confirmed by its launch meanwhile).
            stray = current.state not in ACTIVE and current.job_id is None
            if waiting_for_slurm(current):
                if isinstance(outcome, int):
                    current.job_id, current.state = outcome, "pending"
                    current.updated_at = datetime.now(UTC)
                else:
                    end_row(current, "failed", outcome)
                changed.append(SessionState.of(current))
        if stray and isinstance(outcome, int):
            # Its key row now names the job, so cancel_strays would not: cancel it here.
            changed += _cancel_for(ctx, row.id, row.username, outcome)
    return changed


def _confirm(ctx: SessionContext, row: _Waiting) -> int | str | None:
    """The session's job id, a failure message, or None: ask again next pass."""
    settings = ctx.submit.settings
    now = datetime.now(UTC)
    age = (now - row.created_at).total_seconds()
    with ctx.database.session() as session:
        key = _key_row(session, row.username, row.id)
        state = key.state if key is not None else None
        job_id = key.job_id if key is not None else None
        changed_at = (key.finished_at or key.created_at) if key is not None else now
    if state is None:
        # No key row: sbatch never ran with this key (or Slurm refused it for sure).
        if age > CREATING_SECONDS:
            return "The launch was interrupted before Slurm answered."
        return None
    if state == "submitted" and job_id is not None:
        return job_id  # sbatch answered, the session row never heard
    if state == "submitting" and (now - changed_at).total_seconds() < attempt_limit(settings):
        return None  # the launch (or another pass) is waiting for sbatch right now
    try:
        return _submit_again(ctx, row)
    except PortalError as exc:
        # A Conflict (accounting cannot tell, another pass submitting) settles nothing.
        if definitely_refused(exc) and not isinstance(exc, Conflict):
            return f"The launch failed: {exc.message}"
        if age > settings.session_start_timeout:
            return (
                f"Slurm did not confirm the session's job within "
                f"{settings.session_start_timeout:g} s ({exc.message.rstrip('.')}). If the "
                "job turns up later, the portal cancels it. Launch the app again."
            )
        log.info("session %s: Slurm cannot confirm its job yet: %s", row.id, exc.message)
        return None


def _owner(ctx: SessionContext, username: str) -> Principal:
    who = lookup_principal(username, ctx.submit.settings.admin_group)
    if who is None:  # not a refusal: the user database may be unreachable for a while
        raise SlurmError(f"The user {username} is not known to this system right now.")
    return who


def _submit_again(ctx: SessionContext, row: _Waiting) -> int:
    """The same idempotent submit as the launch, rebuilt from the row and ``job.sh``."""
    who = _owner(ctx, row.username)
    _, data = AsUser(ctx.submit.runas, row.username).read_range(
        row.folder, "job.sh", offset=0, length=SCRIPT_MAX_BYTES
    )
    request = job_request(row.app_id, row.options, data.decode(), row.folder)
    result = submit_job(
        ctx.submit, request, who, idempotency_key=session_key(row.id), count_as=None
    )
    assert isinstance(result, SubmitResult)
    return result.job_id


def cancel_strays(ctx: SessionContext) -> list[SessionState]:
    """Cancel, as the owner, a job that turned up for a session that ended without one.

    Such a session failed waiting for Slurm, or was deleted while waiting; its key row
    is still unsettled. Once Slurm has no job for it long after any attempt could run,
    the key row is dropped and the session is not asked about again.
    """
    settings = ctx.submit.settings
    now = datetime.now(UTC)
    key = literal("session:") + InteractiveSession.id
    query = (
        select(InteractiveSession.id, Submission.id, Submission.state, Submission.created_at)
        .join(
            Submission,
            and_(
                Submission.username == InteractiveSession.username,
                Submission.idempotency_key == key,
            ),
        )
        .where(
            InteractiveSession.state.in_(("failed", "cancelled")),
            InteractiveSession.job_id.is_(None),
            InteractiveSession.ended_at > now - STRAY_WINDOW,
            Submission.state.in_(UNSETTLED),
        )
    )
    with ctx.database.session() as session:
        found = session.execute(query).all()
    changed: list[SessionState] = []
    for session_id, key_id, _state, claimed_at in found:
        with ctx.database.session() as session:
            row = session.get(InteractiveSession, session_id)
            if row is None:
                continue
            username, ended_at = row.username, row.ended_at or now
        marker = key_marker(username, session_key(session_id))
        try:
            match = ctx.submit.adapter.job_with_comment(username, marker, since=claimed_at)
        except PortalError as exc:
            log.info("session %s: cannot ask Slurm for a stray job: %s", session_id, exc.message)
            continue
        if match.job_id is None:
            if not match.unsure and (now - ended_at).total_seconds() > attempt_limit(settings):
                _settle(ctx, key_id, None)
            continue
        _settle(ctx, key_id, match.job_id)
        changed += _cancel_for(ctx, session_id, username, match.job_id)
    return changed


def _cancel_for(
    ctx: SessionContext, session_id: str, username: str, job_id: int
) -> list[SessionState]:
    """Cancel, as its owner, the job of a session that ended before it knew of it, and
    note that on the session (which keeps its ended state)."""
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is None or row.state in ACTIVE or row.job_id is not None:
            return []  # not a session that ended without knowing its job
    try:
        ctx.submit.slurm.cancel(str(job_id), as_user=username)
    except PortalError as exc:
        if isinstance(exc, SlurmError) and job_control.already_ended(exc):
            log.info("job %s of %s turned up after its session ended, and ended", job_id, username)
            note = f"Its job {job_id} turned up later and has ended."
        else:
            log.warning("job %s of %s outlived its session: %s", job_id, username, exc.message)
            note = f"Its job {job_id} turned up later; cancelling it failed: {exc.message}"
    else:
        log.info("job %s of %s turned up after its session ended: cancelled", job_id, username)
        note = f"Its job {job_id} turned up later and was cancelled."
    with ctx.database.session() as session:
        row = session.get(InteractiveSession, session_id)
        if row is None or row.job_id is not None:
            return []
        row.job_id = job_id
        row.error = f"{row.error or 'The session ended.'} {note}"
        row.updated_at = datetime.now(UTC)
        return [SessionState.of(row)]


def _settle(ctx: SessionContext, key_id: int, job_id: int | None) -> None:
    """The key's outcome is known: its job (recorded), or none (the row dropped)."""

    def write(session: Session) -> None:
        if job_id is None:
            session.execute(
                delete(Submission).where(Submission.id == key_id, Submission.state.in_(UNSETTLED))
            )
        else:
            session.execute(
                update(Submission)
                .where(Submission.id == key_id)
                .values(state="submitted", job_id=job_id, finished_at=datetime.now(UTC))
            )

    ctx.database.write_or_log(write, what="submission", about=f"session key row {key_id}")
