"""Slurm's job mail as portal job notifications (``hpcportal-mailprog`` posts it here).

A mail becomes the SAME events the detector makes (``texts.make_event``: ``started``,
``completed``, ``failed``, ``timed_out``, ``cancelled``, ``time_limit``), plus
``requeued`` which only Slurm tells, and is inserted *if absent* under the same
unique key (username, job_id, event): a job the portal watches and that also mails
gets one notification, whichever of the two comes first. ``params["source"]`` is
``"slurm_mail"`` on what came this way. The owner's notification choices apply as
for detected events. Jobs of any origin count: this is how jobs submitted outside
the portal reach it.

The owner is the job's user as Slurm's mail environment gives it (``SLURM_JOB_USER``),
else the recipient when it is a user name (a ``--mail-user`` address names no
account). The subject is parsed again here, strictly: the secret proves the sender,
not its reading of the subject.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from hpcportal.db.models import USERNAME_MAX_LENGTH
from hpcportal.services.auth import utcnow
from hpcportal.services.notification_settings import wanted_events
from hpcportal.services.notifications.detector import (
    Delivery,
    deliveries_for,
    insert_new,
    new_row,
)
from hpcportal.services.notifications.model import END_EVENTS
from hpcportal.services.notifications.texts import JobEvent, make_event
from hpcportal.slurm.states import job_status
from hpcportal.slurm_mail.subject import MAX_SUBJECT, SlurmMail, parse_subject

SOURCE = "slurm_mail"
_USERNAME = re.compile(r"[a-z_][a-z0-9_.-]*\$?")


class SlurmMailIn(BaseModel):
    """What ``hpcportal-mailprog`` (or ``mailprog.sh``) posts."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=MAX_SUBJECT)
    recipient: str = Field(max_length=256)
    job_user: str | None = Field(default=None, max_length=USERNAME_MAX_LENGTH)
    job_id: str | None = Field(default=None, max_length=64)


class SlurmMailOut(BaseModel):
    """``accepted``: the subject is a Slurm job mail for a known user; ``events``: the
    notifications it stands for; ``stored``: those stored now (the rest existed)."""

    accepted: bool
    username: str | None = None
    job_id: str | None = None
    events: list[str] = []
    stored: int = 0


@dataclass(frozen=True, slots=True)
class Received:
    answer: SlurmMailOut
    deliveries: list[Delivery]
    events: list[JobEvent]


def _user(name: str | None) -> str | None:
    if not name or len(name) > USERNAME_MAX_LENGTH or not _USERNAME.fullmatch(name):
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    return name


def owner(body: SlurmMailIn) -> str | None:
    """Whose job it is: ``job_user``, else a recipient that is a user name."""
    return _user(body.job_user) or _user(body.recipient)


def events_of(mail: SlurmMail, username: str) -> list[JobEvent]:
    """The job events a mail stands for (none for array summaries, dependencies, stage-out)."""
    if mail.array_summary:
        return []
    state = mail.state or ""

    def job(event: str) -> JobEvent:
        return make_event(event, username, mail.job_id, mail.name, state,  # type: ignore[arg-type]
                          exit_code=mail.exit_code)  # fmt: skip

    found: list[JobEvent] = []
    if mail.mail_type == "began":
        found.append(job("started"))
    elif mail.mail_type in ("ended", "failed") and mail.state:
        end = END_EVENTS.get(job_status(mail.state))
        if end is not None:
            found.append(job(end))
    elif mail.mail_type == "time_limit":
        found.append(job("timed_out"))
    elif mail.mail_type in ("time_90", "time_80", "time_50"):
        percent = int(mail.mail_type.removeprefix("time_"))
        what = f'Job "{mail.name}" ({mail.job_id})'
        params = {"job_id": mail.job_id, "job_name": mail.name, "state": "RUNNING",
                  "percent_used": percent}  # fmt: skip
        body = f"{what} has used {percent} % of its time limit."
        found.append(JobEvent(username, mail.job_id, "time_limit",
                              "Job nearing its time limit", body, params))  # fmt: skip
    elif mail.mail_type == "requeued":
        what = f'Job "{mail.name}" ({mail.job_id})'
        params = {"job_id": mail.job_id, "job_name": mail.name, "state": "REQUEUED"}
        found.append(JobEvent(username, mail.job_id, "requeued", "Job requeued",
                              f"{what} was requeued.", params))  # fmt: skip
    for event in found:
        event.params["source"] = SOURCE
        if mail.run_time is not None:
            event.params["run_time"] = mail.run_time
    return found


def receive(session: Session, body: SlurmMailIn, now: datetime | None = None) -> Received:
    """Store the notifications of one mail (in the caller's transaction) and return
    what this call stored, to push."""
    mail = parse_subject(body.subject)
    username = owner(body)
    if mail is None or username is None:
        return Received(SlurmMailOut(accepted=False), [], [])
    events = events_of(mail, username)
    wanted = wanted_events(session, {username})[username] | {"requeued"}
    events = [e for e in events if e.event in wanted]
    when = now or utcnow()
    rows = [new_row(e.username, "job", e.event, e.title, e.body, e.params, when, job_id=e.job_id)
            for e in events]  # fmt: skip
    inserted = insert_new(session, rows, ["username", "job_id", "event"])
    answer = SlurmMailOut(
        accepted=True,
        username=username,
        job_id=mail.job_id,
        events=[e.event for e in events],
        stored=len(inserted),
    )
    return Received(answer, deliveries_for(session, inserted), events)
