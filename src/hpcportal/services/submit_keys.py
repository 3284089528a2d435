"""Idempotency keys of submissions: the rows that make a retried request return the
first job, and their states.

A key's row goes through these states:

  (none) --claim--> submitting --sbatch ok--> submitted          (replayed ever after)
                       |   |
                       |   +--certain refusal--> (deleted: a retry may submit again)
                       +--timeout, lost connection--> unknown
  unknown, or submitting for longer than an attempt can take (the process died), or
  submitting on a replica whose heartbeat ended (it died; several replicas only)
      --take over--> submitting, then ask Slurm for the job carrying the key's marker:
          found -> submitted;  none (asked twice) -> sbatch;  cannot ask -> unknown (503)

``created_at`` is when the key was first claimed (jobs from then on may carry its
marker); ``finished_at`` is when the row last changed state, so the age of the
current attempt is ``now - (finished_at or created_at)``. ``services.submit`` runs
the attempts; this module only reads and writes the rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, exists, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import LeaderLease, Submission
from hpcportal.db.session import Database
from hpcportal.ha.lease import HEARTBEAT_PREFIX
from hpcportal.services.submit_models import JobRequest

#: The least time after which a row still "submitting" counts as abandoned (its
#: process died between sbatch and the database); see ``attempt_limit``.
IN_FLIGHT_SECONDS = 60.0
COMMENT_PREFIX = "hpcportal-key:"


def request_hash(request: JobRequest, template_id: int | None) -> str:
    body = json.dumps([request.model_dump(mode="json"), template_id], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def key_marker(username: str, key: str) -> str:
    """What the job's comment carries: a digest of the key, not the key itself."""
    return COMMENT_PREFIX + hashlib.sha256(f"{username}\0{key}".encode()).hexdigest()[:24]


def attempt_limit(settings: Settings) -> float:
    """How long one attempt (upload checks, the Apptainer script, sbatch) may take at
    most; a row still "submitting" after this was abandoned by a process that died."""
    return max(IN_FLIGHT_SECONDS, 3 * settings.slurm_timeout + 10)


def reason(exc: BaseException) -> str:
    """An error's message for a person, without its final full stop."""
    return str(getattr(exc, "message", exc)).rstrip(".")


def claim(
    database: Database,
    username: str,
    key: str,
    digest: str,
    template_id: int | None,
    owner: str | None = None,
) -> int | Submission | None:
    """Insert the key as "submitting": its row id if we got it, else the existing row
    (None if that row was deleted between the two). ``owner``: this replica's name,
    with several replicas (see ``take_over``)."""

    def insert(session: Session) -> int:
        row = Submission(
            username=username,
            idempotency_key=key,
            request_hash=digest,
            state="submitting",
            template_id=template_id,
            created_at=datetime.now(UTC),
            owner=owner,
        )
        session.add(row)
        session.flush()
        return row.id

    try:
        return database.write(insert, what="submission claim")
    except IntegrityError:
        with database.session() as session:
            row = session.scalars(
                select(Submission).where(
                    Submission.username == username, Submission.idempotency_key == key
                )
            ).one_or_none()
            if row is not None:
                session.expunge(row)
            return row


def take_over(database: Database, row: Submission, limit: float, owner: str | None = None) -> bool:
    """Make an "unknown" or abandoned row ours, atomically: of several retries one wins.

    Abandoned: "submitting" for longer than an attempt can take, or at once when the
    replica that ran the attempt (``owner``) has died: its heartbeat row
    (``ha.lease.heartbeat``) has expired. With one server no row has an owner.
    """
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=limit)
    last_change = func.coalesce(Submission.finished_at, Submission.created_at)
    owner_alive = exists().where(
        LeaderLease.name == literal(HEARTBEAT_PREFIX) + Submission.owner,
        LeaderLease.expires_at_ms > time.time_ns() // 1_000_000,
    )
    claim = (
        update(Submission)
        .where(
            Submission.id == row.id,
            or_(
                Submission.state == "unknown",
                and_(Submission.state == "submitting", last_change < stale),
                and_(
                    Submission.state == "submitting",
                    Submission.owner.is_not(None),
                    ~owner_alive,
                ),
            ),
        )
        .values(state="submitting", finished_at=now, owner=owner)
    )
    done = database.write(lambda s: s.execute(claim), what="submission take-over")
    return bool(cast(CursorResult[Any], done).rowcount == 1)


def record_job(database: Database, row_id: int, job_id: int, username: str) -> None:
    """Store the job id. The job exists whatever happens here: a failure is logged
    (and reconciled against Slurm by the next retry), never the request's answer."""
    values = {"state": "submitted", "job_id": job_id, "error": None}
    change = update(Submission).where(Submission.id == row_id)
    database.write_or_log(
        lambda s: s.execute(change.values(**values, finished_at=datetime.now(UTC))),
        what="submission",
        about=f"job {job_id} of {username}",
    )


def mark_unknown(database: Database, row_id: int, error: BaseException | None) -> None:
    """Keep the key: Slurm may have created the job, so a retry must ask first.

    If even this write fails, the row stays "submitting" and is reconciled the same
    way once it is older than an attempt can take.
    """
    change = (
        update(Submission)
        .where(Submission.id == row_id, Submission.state == "submitting")
        .values(
            state="unknown",
            error=reason(error)[:4000] if error is not None else None,
            finished_at=datetime.now(UTC),
        )
    )
    database.write_or_log(
        lambda s: s.execute(change), what="submission", about=f"key row {row_id} unknown"
    )


def forget(database: Database, row_id: int) -> None:
    gone = delete(Submission).where(Submission.id == row_id, Submission.state == "submitting")
    database.write_or_log(
        lambda s: s.execute(gone), what="submission", about=f"key row {row_id} refused"
    )
