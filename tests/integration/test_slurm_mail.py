"""Slurm's mail through the portal (issue 15.4), on the real dev cluster of each release.

alice submits with plain ``sbatch --mail-type=END`` as herself, outside the portal;
slurmctld runs the cluster's ``MailProg`` (``hpcportal-mailprog`` on 22.05, its bash
twin inside the Debian root of 24.11 and 26.05), which posts the mail to the portal,
and alice's ``completed`` notification appears marked ``source: slurm_mail``. The
cluster's MailProg posts to the cluster's portal target, where this test runs its
portal; it refreshes once an hour, so its own detector cannot have told it first
(its first look only records what it sees).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.slurm_cli import sbatch
from tests.integration.target_portal import portal_at

pytestmark = [pytest.mark.integration, pytest.mark.slurm_facing]


@pytest.fixture(scope="module")
def mail_portal(devcluster: dict[str, Any], make_portal: PortalFactory) -> Iterator[RunningPortal]:
    """A portal at the cluster's portal target, where its MailProg posts; one refresh
    an hour, so its detector cannot tell the job's end first."""
    monitoring = devcluster["monitoring"]
    secret = Path(monitoring["slurm_mail_secret_file"])
    settings = make_portal.settings(slurm_mail_secret_file=secret, refresh_interval=3600.0,
                                    stale_after=7200.0)  # fmt: skip
    with portal_at(settings, monitoring["portal_target"]) as portal:
        portal.wait_for_generation(0)
        yield portal


def notifications(portal: RunningPortal, who: dict[str, str]) -> list[dict[str, Any]]:
    with portal.client() as client:
        answer = client.get("/api/v1/notifications", params={"limit": 200}, headers=who)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_plain_sbatch_mail_end_reaches_alice_through_the_mailprog(
    conf: str, mail_portal: RunningPortal
) -> None:
    alice = mail_portal.login("alice")
    job_id = str(sbatch(conf, "alice", "--mail-type=END", "--job-name=mailprog", "--wrap", "true"))
    deadline = time.monotonic() + 90
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = [n for n in notifications(mail_portal, alice) if n["job_id"] == job_id]
        time.sleep(0.5)
    assert found, f"no notification for alice's job {job_id} through the MailProg"
    [end] = found
    assert end["event"] == "completed" and end["kind"] == "job"
    assert end["params"]["source"] == "slurm_mail"
    assert end["params"]["job_name"] == "mailprog" and end["params"]["exit_code"] == 0
    # Nobody else hears of it.
    assert not [n for n in notifications(mail_portal, mail_portal.login("bob"))
                if n["job_id"] == job_id]  # fmt: skip
