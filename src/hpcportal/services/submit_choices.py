"""The accounts and QoS a person may charge a job to: the submit form's lists.

Read from Slurm's associations (``sacctmgr show associations``, through the adapter's
short cache) and passed through ``Visibility.associations`` like ``/accounts``, so the
lists never show more than ``sacctmgr`` run as the person would. Only the person's own
user associations count: an account they coordinate but do not belong to is not one
they can charge. Each account carries the QoS its association allows and its default
QoS, so the form can offer the right QoS once an account is chosen.

If Slurm cannot be read, the lists are empty and the form falls back to free text:
a missing list must never stop a submission that Slurm would accept.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from hpcportal.errors import PortalError
from hpcportal.services.identity import Principal
from hpcportal.services.visibility import for_accounting
from hpcportal.slurm.adapter import SlurmAdapter

log = logging.getLogger(__name__)


class AccountChoice(BaseModel):
    """One account the person can charge, with the QoS its association allows."""

    name: str
    qos: list[str]
    default_qos: str | None = None


class SubmitChoices(BaseModel):
    """The submit form's account and QoS lists (``available`` false: Slurm did not
    answer, so the form takes free text)."""

    accounts: list[AccountChoice]
    qos: list[str]
    available: bool = True


def submit_choices(adapter: SlurmAdapter, who: Principal) -> SubmitChoices:
    """Blocking (``sacctmgr`` behind a cache): run it in a worker thread."""
    try:
        rows = for_accounting(who, adapter).associations(adapter.associations())
    except PortalError as exc:
        log.warning("no account list for %s: %s", who.username, exc)
        return SubmitChoices(accounts=[], qos=[], available=False)
    by_account: dict[str, AccountChoice] = {}
    for row in rows:
        if row.user != who.username:
            continue
        choice = by_account.setdefault(row.account, AccountChoice(name=row.account, qos=[]))
        choice.qos = sorted({*choice.qos, *(q for q in row.qos if q)})
        choice.default_qos = choice.default_qos or row.default_qos or None
    accounts = [by_account[name] for name in sorted(by_account)]
    return SubmitChoices(accounts=accounts, qos=sorted({q for a in accounts for q in a.qos}))
