"""Slurm's mail, caught: ``hpcportal-mailprog`` posts each job mail here
(``services/notifications/slurm_mail.py``). Not for people: the caller proves itself
with the secret of ``slurm_mail_secret_file``; nothing answers without it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from hpcportal.composition import services_of
from hpcportal.dependencies import SettingsDep, strict_query
from hpcportal.services.notifications import slurm_mail
from hpcportal.services.notifications.shared_secret import require_bearer

router = APIRouter(prefix="/slurm-mail", tags=["notifications"])


@router.post("", response_model=slurm_mail.SlurmMailOut, dependencies=[strict_query()])
async def receive_slurm_mail(
    body: slurm_mail.SlurmMailIn,
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> slurm_mail.SlurmMailOut:
    """One Slurm job mail (``{"subject", "recipient", "job_user", "job_id"}``) as the
    job owner's notifications, stored once each and pushed live. ``accepted`` false:
    not a Slurm job mail, or no known user (answered 200 all the same: MailProg
    cannot do better by retrying)."""
    require_bearer(settings.slurm_mail_secret_file, authorization, "slurm_mail_secret_file")
    services = services_of(request)

    def store() -> slurm_mail.Received:
        with services.database.session() as session:
            return slurm_mail.receive(session, body)

    received = await run_in_threadpool(store)
    services.live.deliver(received.deliveries)
    return received.answer
