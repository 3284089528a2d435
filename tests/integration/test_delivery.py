"""Delivery with real protocol peers on loopback (issue 15): one portal (SQLite, one
server: always the leader) sends through a real SMTP server that demands STARTTLS and a
login, a webhook receiver that verifies the HMAC signature, and a Slack-format receiver
(``delivery_peers.py``). Messages are enqueued as producers do (``outbox.enqueue`` in
their own transaction); site channels are made by carol through the API.

- email reaches the SMTP peer, plain and HTML, in English and in Korean, with the
  Message-ID derived from the message's key;
- a signed webhook and a Slack message arrive once, as their receivers expect;
- a receiver that fails five times then recovers gets the message once;
- one that never recovers leaves it dead, which carol sees (alice cannot) and resends;
- a URL outside the allow list is refused, and the admin page renders in both languages.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hpcportal.config import Settings
from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from hpcportal.db.session import Database
from hpcportal.services.delivery import outbox
from hpcportal.services.delivery.channels import Destination, Outgoing
from hpcportal.services.delivery.channels.mail import EmailSender
from hpcportal.services.delivery.signature import delivery_id
from tests.integration.delivery_peers import SmtpTestPeer, WebhookTestPeer
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

MAX_ATTEMPTS = 7


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
        delivery_poll_seconds=0.2,
        delivery_base_delay_seconds=0.1,
        delivery_max_delay_seconds=0.4,
        delivery_max_attempts=MAX_ATTEMPTS,
        delivery_send_timeout_seconds=5.0,
        delivery_allowed_schemes=["http"],
        delivery_allowed_networks=["127.0.0.1/32"],
        **smtp_peer.settings(),
    )
    return make_portal(settings)


@pytest.fixture
def peers() -> Iterator[list[WebhookTestPeer]]:
    started: list[WebhookTestPeer] = []
    try:
        yield started
    finally:
        for peer in started:
            peer.stop()


def database(portal: RunningPortal) -> Database:
    return portal.services.database


def user_channel(portal: RunningPortal, owner: str, kind: str, target: str, lang: str) -> int:
    """A user's verified channel (the settings pages that make them are issue 15's other
    half): inserted as they would store it."""
    with database(portal).session() as session:
        row = DeliveryChannel(owner=owner, kind=kind, name=f"{owner} {kind}", target=target,
                              language=lang, verified_at=datetime.now(UTC), enabled=True,
                              created_at=datetime.now(UTC))  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def enqueue(portal: RunningPortal, channel_id: int, recipient: str | None, **extra: Any) -> str:
    key = f"test:{secrets.token_hex(6)}"
    values: dict[str, Any] = {
        "event": "job.failed",
        "subject": "Job 42 failed",
        "body_text": "Your job 42 (train) failed with exit code 1.",
    }
    values.update(extra)
    with database(portal).session() as session:
        assert outbox.enqueue(session, channel_id=channel_id, recipient=recipient,
                              idempotency_key=key, **values)  # fmt: skip
    return key


def row(portal: RunningPortal, key: str) -> OutboxMessage:
    with database(portal).session() as session:
        found = session.scalars(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
        ).one()
        session.expunge(found)
        return found


def wait_state(portal: RunningPortal, key: str, state: str, timeout: float = 30.0) -> OutboxMessage:
    deadline = time.monotonic() + timeout
    while True:
        found = row(portal, key)
        if found.state == state or time.monotonic() > deadline:
            assert found.state == state, (found.state, found.attempts, found.last_error)
            return found
        time.sleep(0.1)


def site_webhook(
    portal: RunningPortal, carol: dict[str, str], url: str, kind: str
) -> tuple[int, str | None]:
    with portal.client(headers=carol) as c:
        name = f"site {kind} {secrets.token_hex(3)}"
        r = c.post(
            "/api/v1/admin/delivery/channels", json={"kind": kind, "name": name, "target": url}
        )
    assert r.status_code == 201, r.text
    body = r.json()
    return int(body["channel"]["id"]), body["secret"]


def test_email_in_english_and_korean_through_starttls_and_login(
    portal: RunningPortal, smtp_peer: SmtpTestPeer
) -> None:
    before = len(smtp_peer.messages)
    alice = user_channel(portal, "alice", "email", "alice@hpc.example.org", "en")
    dave = user_channel(portal, "dave", "email", "dave@hpc.example.org", "ko")
    en_key = enqueue(portal, alice, "alice", body_html="<p>Your job <b>42</b> failed.</p>")
    ko_key = enqueue(portal, dave, "dave", subject="작업 42 실패",
                     body_text="작업 42(train)가 종료 코드 1로 실패했습니다.",
                     body_html="<p>작업 <b>42</b>가 실패했습니다.</p>")  # fmt: skip
    wait_state(portal, en_key, "sent")
    wait_state(portal, ko_key, "sent")
    mails = {str(m["To"]): m for m in smtp_peer.wait_for(before + 2)[before:]}
    assert set(mails) == {"alice@hpc.example.org", "dave@hpc.example.org"}
    assert smtp_peer.logins and set(smtp_peer.logins) == {"portal"}

    english, korean = mails["alice@hpc.example.org"], mails["dave@hpc.example.org"]
    assert english["Message-ID"] == f"<{delivery_id(en_key)}@hpc.example.org>"
    assert english["From"] == "portal@hpc.example.org"
    assert english["Content-Language"] == "en" and english["Subject"] == "Job 42 failed"
    assert english.get_content_type() == "multipart/alternative"
    plain = english.get_body(("plain",))
    html = english.get_body(("html",))
    assert plain is not None and "exit code 1" in plain.get_content()
    assert html is not None and "<b>42</b>" in html.get_content()
    assert korean["Content-Language"] == "ko" and korean["Subject"] == "작업 42 실패"
    korean_plain = korean.get_body(("plain",))
    assert korean_plain is not None and "실패했습니다" in korean_plain.get_content()


def test_signed_webhook_and_slack_arrive_once(
    portal: RunningPortal, carol: dict[str, str], peers: list[WebhookTestPeer]
) -> None:
    hook = WebhookTestPeer(secret="x").start()  # secret set below, from the portal
    slack = WebhookTestPeer(slack=True).start()
    peers += [hook, slack]
    hook_id, secret = site_webhook(portal, carol, hook.url, "webhook")
    assert secret is not None and len(secret) >= 32
    hook.secret = secret
    slack_id, slack_secret = site_webhook(portal, carol, slack.url, "slack")
    assert slack_secret is None
    hook_key = enqueue(portal, hook_id, None, event="alert.node_down", payload={"node": "node003"})
    slack_key = enqueue(portal, slack_id, None, event="alert.node_down")
    wait_state(portal, hook_key, "sent")
    wait_state(portal, slack_key, "sent")

    assert hook.rejected == [] and hook.counts() == {delivery_id(hook_key): 1}
    document = hook.accepted[0].body
    assert document["event"] == "alert.node_down" and document["payload"] == {"node": "node003"}
    assert document["subject"] == "Job 42 failed" and document["recipient"] is None
    assert slack.rejected == [] and slack.counts() == {delivery_id(slack_key): 1}
    blocks = slack.accepted[0].body["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"] == "Job 42 failed"
    assert "exit code 1" in slack.accepted[0].body["text"]


def test_a_wrong_secret_is_rejected_by_the_receiver(
    portal: RunningPortal, carol: dict[str, str], peers: list[WebhookTestPeer]
) -> None:
    """The receiver's check can fail: a peer holding another secret refuses (400, which
    the portal takes as permanent: dead at once)."""
    hook = WebhookTestPeer(secret="not-the-portal-secret-0123456789").start()
    peers.append(hook)
    hook_id, _ = site_webhook(portal, carol, hook.url, "webhook")
    key = enqueue(portal, hook_id, None)
    dead = wait_state(portal, key, "dead")
    assert hook.accepted == [] and hook.rejected == ["bad signature"]
    assert dead.attempts == 1 and "HTTP 400" in (dead.last_error or "")


def test_a_receiver_failing_five_times_then_recovering_gets_it_once(
    portal: RunningPortal, carol: dict[str, str], peers: list[WebhookTestPeer]
) -> None:
    hook = WebhookTestPeer(secret="x", fail_first=5).start()
    peers.append(hook)
    hook_id, secret = site_webhook(portal, carol, hook.url, "webhook")
    hook.secret = secret
    key = enqueue(portal, hook_id, None)
    sent = wait_state(portal, key, "sent")
    assert hook.requests == 6 and sent.attempts == 6
    assert hook.counts() == {delivery_id(key): 1}


def test_a_receiver_that_never_recovers_leaves_a_dead_letter_carol_resends(
    portal: RunningPortal,
    carol: dict[str, str],
    alice: dict[str, str],
    peers: list[WebhookTestPeer],
) -> None:
    hook = WebhookTestPeer(secret="x", fail_always=True).start()
    peers.append(hook)
    hook_id, secret = site_webhook(portal, carol, hook.url, "webhook")
    hook.secret = secret
    key = enqueue(portal, hook_id, "alice")
    dead = wait_state(portal, key, "dead")
    assert dead.attempts == MAX_ATTEMPTS and hook.requests == MAX_ATTEMPTS
    assert "HTTP 503" in (dead.last_error or "")

    with portal.client(headers=carol) as c:
        listed = c.get("/api/v1/admin/delivery/outbox", params={"state": "dead"})
        assert listed.status_code == 200, listed.text
        items = {i["id"]: i for i in listed.json()["items"]}
        assert dead.id in items and items[dead.id]["delivery_id"] == delivery_id(key)
        assert listed.json()["counts"]["dead"] >= 1
    with portal.client(headers=alice) as c:
        assert c.get("/api/v1/admin/delivery/outbox").status_code == 403
        assert c.post(f"/api/v1/admin/delivery/outbox/{dead.id}/resend").status_code == 403

    hook.fail_always = False  # the receiver is fixed
    with portal.client(headers=carol) as c:
        again = c.post(f"/api/v1/admin/delivery/outbox/{dead.id}/resend")
        assert again.status_code == 200, again.text
        assert again.json()["state"] == "pending" and again.json()["attempts"] == 0
    wait_state(portal, key, "sent")
    assert hook.counts() == {delivery_id(key): 1}
    with portal.client(headers=carol) as c:
        twice = c.post(f"/api/v1/admin/delivery/outbox/{dead.id}/resend")
        assert twice.status_code == 409  # sent: resending would deliver it twice


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:9/hook",  # loopback, not in the allowed networks
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://localhost.localdomain:1/x",  # a name for loopback (or unresolvable)
        "ftp://127.0.0.1/hook",
    ],
)
def test_urls_outside_the_allow_list_are_refused(
    portal: RunningPortal, carol: dict[str, str], url: str
) -> None:
    with portal.client(headers=carol) as c:
        r = c.post("/api/v1/admin/delivery/channels",
                   json={"kind": "webhook", "name": "forged", "target": url})  # fmt: skip
    assert r.status_code == 422, r.text


@contextlib.contextmanager
def page_client(portal: RunningPortal, user: str, lang: str) -> Iterator[httpx.Client]:
    with portal.client(follow_redirects=False) as client:
        client.cookies.set("hpcportal_lang", lang)
        form = {"username": user, "password": f"{user}-demo", "next": "/"}
        r = client.post("/login", data=form)
        assert r.status_code == 303, r.text
        yield client


@pytest.mark.parametrize(("lang", "title"), [("en", "Admin: delivery"), ("ko", "관리: 알림 발송")])
def test_admin_page_in_english_and_korean(portal: RunningPortal, lang: str, title: str) -> None:
    with page_client(portal, "carol", lang) as c:
        r = c.get("/admin/delivery")
        assert r.status_code == 200, r.text
        assert title in r.text and 'data-testid="outbox-counts"' in r.text
        assert 'href="/admin/delivery" aria-current="page"' in r.text
    with page_client(portal, "alice", lang) as c:
        assert c.get("/admin/delivery").status_code == 403


def test_resend_form_on_the_page(
    portal: RunningPortal, carol: dict[str, str], peers: list[WebhookTestPeer], tmp_path: Path
) -> None:
    hook = WebhookTestPeer(secret="x", fail_always=True).start()
    peers.append(hook)
    hook_id, secret = site_webhook(portal, carol, hook.url, "webhook")
    hook.secret = secret
    key = enqueue(portal, hook_id, None)
    dead = wait_state(portal, key, "dead")
    hook.fail_always = False
    with page_client(portal, "carol", "en") as c:
        page = c.get("/admin/delivery", params={"state": "dead"})
        assert f'data-testid="resend-{dead.id}"' in page.text
        csrf = c.cookies.get("hpcportal_csrf") or ""
        r = c.post(f"/admin/delivery/outbox/{dead.id}/resend", data={"csrf": csrf})
        assert r.status_code == 303, r.text
    wait_state(portal, key, "sent")
    assert hook.counts() == {delivery_id(key): 1}


def test_implicit_tls_smtp(tmp_path: Path) -> None:
    """Port-465 style TLS from the first byte, through the email sender alone."""
    peer = SmtpTestPeer(tmp_path, implicit=True).start()
    try:
        settings = Settings(**peer.settings())  # type: ignore[arg-type]
        to = Destination(1, "email", "bob@hpc.example.org", "en")
        message = Outgoing(delivery_id("implicit"), "job.failed", "bob", "Subject", "Body",
                           None, datetime.now(UTC))  # fmt: skip
        asyncio.run(EmailSender(settings).send(to, message))
        assert [str(m["To"]) for m in peer.messages] == ["bob@hpc.example.org"]
        assert peer.messages[0].get_content_type() == "text/plain"
        assert peer.logins == ["portal"]
    finally:
        peer.stop()
