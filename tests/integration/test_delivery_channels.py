"""A person's own channels end to end (issue 15.2): a real portal on loopback (one
server, so always the leader; 1 s refreshes of the default dev cluster) sends through
the aiosmtpd SMTP test peer (``delivery_peers.py``: STARTTLS and a login).

- alice adds her email address, reads the confirmation code from the mail the peer
  received, confirms it and subscribes to "job failed"; dave does the same with a
  Korean channel;
- each submits a job that fails on the dev cluster (plain sbatch, as themselves);
  the detector's event is routed in its own transaction, and the peer receives the
  job-failed mail for alice in English and for dave in Korean, once each;
- bob cannot see or change alice's channels, subscriptions or history (404);
- a webhook URL outside the allow list is refused at creation with a 422 saying why;
- the CLI lists alice's channels, subscriptions and deliveries with her API token.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from tests.integration import slurm_cli
from tests.integration.delivery_peers import SmtpTestPeer
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

API = "/api/v1/notifications"
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def smtp_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestPeer]:
    peer = SmtpTestPeer(tmp_path_factory.mktemp("smtp")).start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory, smtp_peer: SmtpTestPeer) -> RunningPortal:
    settings = make_portal.settings(
        None,
        refresh_interval=1.0,
        delivery_poll_seconds=0.2,
        delivery_digest_seconds=0.5,
        delivery_send_timeout_seconds=5.0,
        **smtp_peer.settings(),
    )
    return make_portal(settings)


def mail_to(peer: SmtpTestPeer, address: str, subject_part: str) -> list[EmailMessage]:
    return [
        m for m in list(peer.messages) if m["To"] == address and subject_part in str(m["Subject"])
    ]


def wait_mail(peer: SmtpTestPeer, address: str, subject_part: str) -> EmailMessage:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = mail_to(peer, address, subject_part)
        if found:
            return found[0]
        time.sleep(0.2)
    seen = [(m["To"], str(m["Subject"])) for m in peer.messages]
    raise AssertionError(f"no mail to {address} about {subject_part!r}; got {seen}")


def plain(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def confirmed_email_channel(
    portal: RunningPortal, peer: SmtpTestPeer, login: dict[str, str], address: str, lang: str
) -> int:
    """Add the address, read the code from the mail the peer got, confirm it."""
    with portal.client(headers=login) as c:
        created = c.post(
            f"{API}/channels",
            json={"kind": "email", "name": "mail", "target": address, "language": lang},
        )
        assert created.status_code == 201, created.text
        channel_id = int(created.json()["channel"]["id"])
        subject = "Confirm your notification channel" if lang == "en" else "확인 코드"
        mail = wait_mail(peer, address, subject)
        code = re.search(r"\b(\d{6})\b", plain(mail))
        assert code is not None, plain(mail)
        # Before confirming, nothing but the code goes there.
        assert c.post(f"{API}/channels/{channel_id}/test").status_code == 409
        verified = c.post(f"{API}/channels/{channel_id}/verify", json={"code": code.group(1)})
        assert verified.status_code == 200 and verified.json()["verified"], verified.text
        sub = c.post(f"{API}/subscriptions", json={"event": "job_failed", "channel_id": channel_id})
        assert sub.status_code == 201, sub.text
    return channel_id


def test_job_failed_mail_in_english_and_korean_owners_apart(
    portal: RunningPortal, smtp_peer: SmtpTestPeer, conf: str, bob: dict[str, str]
) -> None:
    alice = portal.login("alice")
    dave = portal.login("dave")
    alice_channel = confirmed_email_channel(portal, smtp_peer, alice, "alice@hpc.example.org", "en")
    confirmed_email_channel(portal, smtp_peer, dave, "dave@hpc.example.org", "ko")

    jobs = [
        slurm_cli.sbatch(conf, "alice", "--job-name=fails-en", "--wrap", "sleep 3; exit 3"),
        slurm_cli.sbatch(conf, "dave", "--job-name=fails-ko", "--wrap", "sleep 3; exit 3"),
    ]
    try:
        english = wait_mail(smtp_peer, "alice@hpc.example.org", f"({jobs[0]})")
        korean = wait_mail(smtp_peer, "dave@hpc.example.org", f"({jobs[1]})")
    finally:
        slurm_cli.scancel(conf, *jobs, missing_ok=True)
    assert "Job failed: fails-en" in str(english["Subject"])
    assert "failed" in plain(english) and english["Content-Language"] == "en"
    html = english.get_body(preferencelist=("html",))
    assert html is not None and "<p>" in str(html.get_content())
    assert "작업 실패: fails-ko" in str(korean["Subject"])
    assert "실패했습니다" in plain(korean) and korean["Content-Language"] == "ko"
    time.sleep(3)  # a few more refreshes and sender rounds: still one mail each
    assert len(mail_to(smtp_peer, "alice@hpc.example.org", f"({jobs[0]})")) == 1
    assert len(mail_to(smtp_peer, "dave@hpc.example.org", f"({jobs[1]})")) == 1

    with portal.client(headers=alice) as c:
        history = c.get(f"{API}/deliveries").json()["items"]
        failed = [m for m in history if m["event"] == "job_failed"]
        assert [m["state"] for m in failed] == ["sent"]
        subs = c.get(f"{API}/subscriptions").json()
    with portal.client(headers=bob) as c:
        assert c.get(f"{API}/channels").json() == []
        assert c.get(f"{API}/subscriptions").json() == []
        assert c.get(f"{API}/deliveries").json()["items"] == []
        assert c.patch(f"{API}/channels/{alice_channel}", json={"name": "x"}).status_code == 404
        assert c.delete(f"{API}/channels/{alice_channel}").status_code == 404
        assert c.post(f"{API}/channels/{alice_channel}/test").status_code == 404
        assert c.delete(f"{API}/subscriptions/{subs[0]['id']}").status_code == 404

    # The CLI, with alice's API token, shows the same.
    with portal.client(headers=alice) as c:
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli-notify", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()
    listed = runner.invoke(cli, ["notifications", "channels", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "alice@hpc.example.org" in listed.output and "verified" in listed.output
    rules = runner.invoke(cli, ["notifications", "subscriptions", "list"], env=env)
    assert rules.exit_code == 0 and "job_failed" in rules.output, rules.output
    sent = runner.invoke(cli, ["notifications", "deliveries", "--state", "sent"], env=env)
    assert sent.exit_code == 0 and f"({jobs[0]})" in sent.output, sent.output
    other = runner.invoke(cli, ["notifications", "channels", "test", "999999"], env=env)
    assert other.exit_code != 0
    # A subscription changed from the CLI: quiet hours set, then removed; nothing else moves.
    sub = str(subs[0]["id"])
    quiet = runner.invoke(cli, ["notifications", "subscriptions", "change", sub, "--quiet",
                                "22:00-07:00", "--time-zone", "Asia/Seoul"], env=env)  # fmt: skip
    assert quiet.exit_code == 0 and "quiet 22:00-07:00 Asia/Seoul" in quiet.output, quiet.output
    loud = runner.invoke(
        cli, ["notifications", "subscriptions", "change", sub, "--no-quiet", "--json"], env=env
    )
    assert loud.exit_code == 0, loud.output
    after = json.loads(loud.output)
    assert (after["quiet_start"], after["quiet_end"], after["time_zone"]) == (
        None, None, "Asia/Seoul")  # fmt: skip
    assert (after["event"], after["mode"]) == (subs[0]["event"], subs[0]["mode"])
    nothing = runner.invoke(cli, ["notifications", "subscriptions", "change", sub], env=env)
    assert nothing.exit_code == 2 and "Nothing to change" in nothing.output


def test_webhooks_outside_the_allow_list_are_refused(portal: RunningPortal) -> None:
    with portal.client(headers=portal.login("alice")) as c:
        for url in (
            "http://127.0.0.1:9/hook",
            "https://10.20.30.40/hook",
            "https://169.254.169.254/",
        ):
            r = c.post(f"{API}/channels", json={"kind": "webhook", "name": "h", "target": url})
            assert r.status_code == 422, r.text
            assert "This URL is not allowed" in r.json()["detail"]
        assert all(ch["kind"] != "webhook" for ch in c.get(f"{API}/channels").json())
