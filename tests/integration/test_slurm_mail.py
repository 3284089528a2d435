"""Slurm's mail through the portal (issue 15.4), on the real dev cluster of each release.

alice submits with plain ``sbatch --mail-type=END`` as herself, outside the portal;
slurmctld runs the cluster's ``MailProg`` (``hpcportal-mailprog`` on 22.05, its bash
twin inside the Debian root of 24.11 and 26.05), which posts the mail to the portal,
and alice's ``completed`` notification appears marked ``source: slurm_mail``. The
portal here refreshes once an hour, so its own detector cannot have told it first
(its first look only records what it sees). The cluster's MailProg settings
(``etc/slurm-mail.conf``) point at this test's portal during the test and back after.
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

pytestmark = [pytest.mark.integration, pytest.mark.slurm_facing]


@pytest.fixture(scope="module")
def mail_portal(devcluster: dict[str, Any], make_portal: PortalFactory) -> RunningPortal:
    secret = devcluster["monitoring"]["slurm_mail_secret_file"]
    portal = make_portal(slurm_mail_secret_file=Path(secret), refresh_interval=3600.0,
                         stale_after=7200.0)  # fmt: skip
    portal.wait_for_generation(0)
    return portal


@pytest.fixture
def mail_to(devcluster: dict[str, Any], mail_portal: RunningPortal) -> Iterator[Path]:
    """The cluster's MailProg settings pointed at ``mail_portal``, restored after."""
    config = Path(devcluster["monitoring"]["slurm_mail_config"])
    before = config.read_text()
    lines = [
        f"url = {mail_portal.url}/api/v1/slurm-mail" if line.startswith("url =") else line
        for line in before.splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    try:
        yield config
    finally:
        config.write_text(before)


def notifications(portal: RunningPortal, who: dict[str, str]) -> list[dict[str, Any]]:
    with portal.client() as client:
        answer = client.get("/api/v1/notifications", params={"limit": 200}, headers=who)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_plain_sbatch_mail_end_reaches_alice_through_the_mailprog(
    conf: str, mail_portal: RunningPortal, mail_to: Path
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
