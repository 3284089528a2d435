"""``hpcportal admin delivery`` against a real portal (issue 15 item 6: the admin page
for site channels, the outbox and dead letters exists the same in the CLI). One portal
on SQLite whose sender retries fast and gives up after two attempts; a webhook
receiver on loopback that always fails (``delivery_peers.WebhookTestPeer``) makes the
dead letter, which carol lists with ``--state dead`` and resends once it recovers.
alice (no admin role) gets the API's 403 message and exit status 1."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from hpcportal.services.delivery.signature import delivery_id
from tests.integration.delivery_peers import WebhookTestPeer
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_delivery import enqueue, wait_state

MAX_ATTEMPTS = 2


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    settings = make_portal.settings(
        None,
        delivery_poll_seconds=0.2,
        delivery_base_delay_seconds=0.1,
        delivery_max_delay_seconds=0.2,
        delivery_max_attempts=MAX_ATTEMPTS,
        delivery_send_timeout_seconds=5.0,
        delivery_allowed_schemes=["http"],
        delivery_allowed_networks=["127.0.0.1/32"],
    )
    return make_portal(settings)


def token_env(portal: RunningPortal, headers: dict[str, str]) -> dict[str, str]:
    with portal.client(headers=headers) as c:
        made = c.post("/api/v1/auth/api-tokens", json={"name": "cli", "scopes": ["read", "write"]})
    assert made.status_code == 201, made.text
    return {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": made.json()["token"]}


@pytest.fixture(scope="module")
def carol_env(portal: RunningPortal, carol: dict[str, str]) -> dict[str, str]:
    return token_env(portal, carol)


@pytest.fixture
def hook() -> Iterator[WebhookTestPeer]:
    peer = WebhookTestPeer(secret="x", fail_always=True).start()
    try:
        yield peer
    finally:
        peer.stop()


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, ["admin", "delivery", *args], env=env)


def test_carol_adds_lists_updates_and_removes_a_site_webhook(
    portal: RunningPortal, carol_env: dict[str, str]
) -> None:
    name = f"cli hook {secrets.token_hex(3)}"
    added = run(carol_env, "channels", "add", "webhook", name, "http://127.0.0.1:9/hook")
    assert added.exit_code == 0, added.output
    assert "Signing secret (shown once" in added.output
    channel_id = added.output.split("Added site channel ")[1].split(".")[0]

    listed = run(carol_env, "channels", "list", "--json")
    assert listed.exit_code == 0, listed.output
    mine = [c for c in json.loads(listed.output) if str(c["id"]) == channel_id]
    assert mine and mine[0]["name"] == name and mine[0]["signed"] and mine[0]["enabled"]
    assert "secret" not in mine[0]  # only the answer to add carries it

    changed = run(carol_env, "channels", "update", channel_id, "--disable", "--language", "ko")
    assert changed.exit_code == 0, changed.output
    assert "disabled" in changed.output and " ko " in changed.output
    nothing = run(carol_env, "channels", "update", channel_id)
    assert nothing.exit_code == 1 and "Give something to change" in nothing.output

    removed = run(carol_env, "channels", "remove", channel_id, "--yes")
    assert removed.exit_code == 0, removed.output
    assert name not in run(carol_env, "channels", "list").output
    gone = run(carol_env, "channels", "remove", channel_id, "--yes")
    assert gone.exit_code == 1 and f"no site channel {channel_id}" in gone.output


def test_a_dead_letter_is_listed_and_resent_and_alice_is_refused(
    portal: RunningPortal,
    carol_env: dict[str, str],
    alice: dict[str, str],
    hook: WebhookTestPeer,
) -> None:
    added = run(carol_env, "channels", "add", "webhook", "cli dead", hook.url, "--json")
    assert added.exit_code == 0, added.output
    created = json.loads(added.output)
    hook.secret = created["secret"]
    key = enqueue(portal, int(created["channel"]["id"]), None)
    dead = wait_state(portal, key, "dead")

    listed = run(carol_env, "outbox", "--state", "dead")
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.split()[:1] == [str(dead.id)])
    assert " dead " in line and f"{MAX_ATTEMPTS}x" in line
    assert "HTTP 503" in listed.output
    as_json = json.loads(run(carol_env, "outbox", "--state", "dead", "--json").output)
    assert as_json["counts"]["dead"] >= 1
    assert {i["state"] for i in as_json["items"]} == {"dead"}

    alice_env = token_env(portal, alice)
    for args in (("outbox",), ("resend", str(dead.id)), ("channels", "list")):
        refused = run(alice_env, *args)
        assert refused.exit_code == 1, refused.output
        assert "Error: This needs the administrator role." in refused.output

    hook.fail_always = False  # the receiver is fixed
    again = run(carol_env, "resend", str(dead.id))
    assert again.exit_code == 0, again.output
    assert f"Message {dead.id} is pending again" in again.output
    wait_state(portal, key, "sent")
    assert hook.counts() == {delivery_id(key): 1}
    twice = run(carol_env, "resend", str(dead.id))
    assert twice.exit_code == 1 and twice.output.startswith("Error: ")
