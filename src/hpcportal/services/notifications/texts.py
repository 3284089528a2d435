"""What a job event says, and which state changes are events at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hpcportal.services.notifications.model import ACTIVE, END_EVENTS, ENDED, WAITING, Event
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus

# --- Texts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One detected event, before it is stored."""

    username: str
    job_id: str
    event: Event
    title: str
    body: str
    params: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.username, self.job_id, self.event)


def make_event(
    event: Event,
    user: str,
    job_id: str,
    name: str,
    state: str,
    *,
    exit_code: int | None = None,
    nodes: str | None = None,
    minutes_left: int | None = None,
) -> JobEvent:
    """The event with its English title and body, and the parameters a front end needs
    to say the same in its language."""
    params: dict[str, Any] = {"job_id": job_id, "job_name": name, "state": state}
    what = f'Job "{name}" ({job_id})'
    if event == "started":
        params["nodes"] = nodes
        title, body = "Job started", f"{what} started" + (f" on {nodes}." if nodes else ".")
    elif event == "completed":
        params["exit_code"] = exit_code
        title, body = "Job completed", f"{what} completed."
    elif event == "failed":
        params["exit_code"] = exit_code
        code = f" with exit code {exit_code}" if exit_code else ""
        title, body = "Job failed", f"{what} failed{code}."
    elif event == "timed_out":
        title, body = "Job timed out", f"{what} was stopped at its time limit."
    elif event == "cancelled":
        title, body = "Job cancelled", f"{what} was cancelled."
    elif event == "held":
        title, body = "Job held", f"{what} is held and will not start until released."
    elif event == "requeued":
        title, body = "Job requeued", f"{what} was requeued and waits in the queue again."
    else:
        params["minutes_left"] = minutes_left
        title = "Job nearing its time limit"
        body = f"{what} has about {minutes_left} min left before its time limit."
    return JobEvent(user, job_id, event, title, body, params)


def transition_events(previous: JobStatus | None, current: JobStatus, *, ran: bool) -> list[Event]:
    """Events for a job going from ``previous`` (``None``: never seen) to ``current``.

    ``ran`` says whether a job that has ended did run (a cancelled pending job did not).
    """
    if previous in ENDED:
        return []  # already announced (a requeued job starts over quietly)
    events: list[Event] = []
    if previous in ACTIVE and current in WAITING:
        # Seen running, queued again: Slurm requeued it (``scontrol requeue``, node
        # failure, preemption). Same key as Slurm's REQUEUE mail, so one row either way.
        events.append("requeued")
    if current is JobStatus.QUEUED_HELD and previous is not None and previous is not current:
        # A hold seen happening (user, admin, or requeue-hold); a job first seen held was
        # submitted so (``--hold``) and is no news.
        events.append("held")
    waiting = previous is None or previous in WAITING
    if waiting and (current in ACTIVE or (current in ENDED and ran)):
        events.append("started")
    if current in ENDED:
        events.append(END_EVENTS[current])
    return events


def job_ran(job: Job) -> bool:
    return bool(job.batch_host or job.nodes)


def record_ran(record: AccountingRecord) -> bool:
    return record.start_time is not None and record.nodes not in (None, "None assigned")


def tracked(job: Job) -> bool:
    """Jobs with events: not the record of an array's still-pending tasks, whose id
    changes as tasks start (each task is tracked on its own once it exists)."""
    return job.array is None or job.array.task_id is not None


def minutes_left(job: Job, now: datetime, threshold: int) -> int | None:
    """Minutes before a running job hits its limit, when under ``threshold``."""
    if job.status is not JobStatus.RUNNING or job.start_time is None:
        return None
    limit = job.time_limit_minutes
    if limit is None or limit <= threshold:
        return None
    left = (job.start_time + timedelta(minutes=limit) - now).total_seconds() / 60
    if 0 < left < threshold:
        return max(1, round(left))
    return None
