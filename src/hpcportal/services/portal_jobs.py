"""Jobs the portal itself submitted, from its own record (the ``submissions`` table).

Slurm is the authority on a job; this record is the fallback for when it has none:
slurmctld forgot the job after ``MinJobAge`` and accounting does not know it either
(accounting off, slurmdbd unreachable, a record purged). Then the job is still found —
its id, owner, when it was submitted and from which template — and shown as
"undetermined" rather than as a job that never existed. Only the owner's own rows are
read: another person's submissions are not theirs to list.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.models import Submission
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

#: What the portal knows of a job Slurm no longer reports: the state it shows.
UNKNOWN_STATE = "UNKNOWN"
#: Younger submissions are left out of lists: a job just submitted may not be in the
#: snapshot yet, and slurmctld keeps every job at least this long (the default
#: ``MinJobAge``), so missing from it this early means "not seen yet", not "forgotten".
SETTLED_AFTER = timedelta(minutes=5)


def job_of(row: Submission) -> Job:
    """A submission row as a ``Job`` whose state Slurm can no longer tell."""
    assert row.job_id is not None
    return Job(
        id=str(row.job_id),
        job_id=row.job_id,
        name="",
        user=row.username,
        partition="",
        state=UNKNOWN_STATE,
        status=JobStatus.UNDETERMINED,
        submit_time=row.created_at,
    )


def submitted_job(session: Session, username: str, job_id: str) -> Job | None:
    """``username``'s job ``job_id`` if the portal submitted it (the newest such row)."""
    if not job_id.isdigit():
        return None
    row = session.scalars(
        select(Submission)
        .where(Submission.username == username, Submission.job_id == int(job_id))
        .order_by(Submission.created_at.desc())
        .limit(1)
    ).first()
    return job_of(row) if row is not None else None


def submitted_since(
    session: Session, username: str, days: int, known: Collection[str], *, limit: int = 1000
) -> list[Job]:
    """``username``'s jobs submitted through the portal in the last ``days`` days (and
    at least ``SETTLED_AFTER`` ago) that neither slurmctld nor accounting lists
    (``known``: the ids they do)."""
    if days <= 0:
        return []
    now = datetime.now(UTC)
    since = now - timedelta(days=days)
    rows = session.scalars(
        select(Submission)
        .where(
            Submission.username == username,
            Submission.job_id.is_not(None),
            Submission.created_at >= since,
            Submission.created_at <= now - SETTLED_AFTER,
        )
        .order_by(Submission.created_at.desc())
        .limit(limit)
    )
    return [job_of(row) for row in rows if str(row.job_id) not in known]
