"""Giving a session's job more time, when Slurm would allow it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from hpcportal.errors import Conflict, Forbidden, InvalidInput, PortalError, SlurmPermissionDenied
from hpcportal.services.identity import Principal
from hpcportal.services.sessions.context import SessionContext
from hpcportal.services.sessions.views import SessionView, owned, view

log = logging.getLogger(__name__)
#: Slurm's rule, said once (``may_extend``); shown as it is on the session page.
RUNNING_LIMIT_REFUSED = (
    "Slurm lets only its operators and administrators give a running job more time; "
    "the time limit was not changed."
)


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
        row = owned(session, who, session_id)
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
        row = owned(session, who, session_id)
        if job is not None and job.end_time is not None:
            row.ends_at = job.end_time
            row.updated_at = datetime.now(UTC)
        return view(row)
