"""The admin area's reservations page on the live dev cluster, through its forms.

carol logs in through the login form, plans a reservation a year ahead (the page
shows the exact scontrol command), applies it with the CSRF value and a reason, opens
it in the update form (its values filled in), plans and applies an update from that
form, and reverts both from the page's list of changes; ``scontrol show reservation``
agrees at each step. An Apply without the plan's argv or with a stale one is 409, a
forged CSRF value 403, a bad number 422, all with nothing run; alice gets 403. A
reservation of the test's own, deleted as root at the end.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.portal_server import RunningPortal

PASSWORDS = {"alice": "alice-demo", "carol": "carol-demo"}


def browser(portal: RunningPortal, user: str) -> httpx.Client:
    client = portal.client(follow_redirects=False)
    r = client.post("/login", data={"username": user, "password": PASSWORDS[user], "next": "/"})
    assert r.status_code == 303, r.text
    return client


def shown(name: str) -> dict[str, str] | None:
    done = subprocess.run(
        ["scontrol", "-o", "show", "reservation", name],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip
    if done.returncode != 0 or not done.stdout.startswith("ReservationName="):
        return None
    return dict(p.partition("=")[::2] for p in done.stdout.split() if "=" in p)


@pytest.fixture
def resv(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]
    name = f"t_resv_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        subprocess.run(
            ["scontrol", "delete", f"ReservationName={name}"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert shown(name) is None


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert match, name
    return html.unescape(match[1])


def field(page: str, name: str) -> str:
    match = re.search(rf'<input id="plan-{name}" name="{name}"[^>]* value="([^"]*)"', page)
    assert match, name
    return html.unescape(match[1])


def revert(client: httpx.Client, csrf: str, page: str, change_id: str) -> None:
    """Revert change ``change_id`` through its form on ``page`` (with the argv it shows)."""
    form = re.search(
        rf'action="/admin/reservations/changes/{change_id}/revert"(.*?)</form>', page, re.S
    )
    assert form, f"change {change_id} offers a revert"
    expect = re.search(r'name="expect" value="([^"]*)"', form[1])
    assert expect
    undone = client.post(
        f"/admin/reservations/changes/{change_id}/revert",
        data={"csrf": csrf, "why": "page test done", "expect": html.unescape(expect[1])},
    )
    assert undone.status_code == 303, undone.text


def applied_id(response: httpx.Response) -> str:
    return response.headers["location"].rsplit("applied=", 1)[1]


def test_carol_plans_applies_updates_and_reverts_on_the_page(
    portal: RunningPortal, resv: str
) -> None:
    carol = browser(portal, "carol")
    csrf = carol.cookies.get("hpcportal_csrf") or ""
    day = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
    form = {"action": "create", "name": resv, "start": f"{day}T06:00", "end": f"{day}T09:30",
            "nodes": "node004", "users": "carol"}  # fmt: skip
    planned = carol.get("/admin/reservations", params={**form, "flags": "MAINT"})
    assert planned.status_code == 200, planned.text
    argv = (
        f"$ scontrol create reservation ReservationName={resv} StartTime={day}T06:00:00 "
        f"EndTime={day}T09:30:00 Nodes=node004 Users=carol Flags=MAINT"
    )
    assert argv in html.unescape(planned.text)
    expect = hidden(planned.text, "expect")
    assert shown(resv) is None

    body = {**{k: hidden(planned.text, k) for k in form}, "flags": "MAINT", "csrf": csrf}
    for stale in ("", json.dumps([["scontrol", "delete", f"ReservationName={resv}"]])):
        r = carol.post("/admin/reservations/apply", data={**body, "expect": stale, "why": "x"})
        assert r.status_code == 409, r.text
    forged = carol.post(
        "/admin/reservations/apply", data={**body, "expect": expect, "csrf": "wrong", "why": "x"}
    )
    assert forged.status_code == 403 and shown(resv) is None
    done = carol.post("/admin/reservations/apply", data={**body, "expect": expect, "why": "pt"})
    assert done.status_code == 303, done.text
    created = applied_id(done)
    row = shown(resv)
    assert row is not None and row["EndTime"] == f"{day}T09:30:00" and "MAINT" in row["Flags"]
    original = row

    edit = carol.get("/admin/reservations", params={"edit": resv}).text
    assert field(edit, "start") == f"{day}T06:00" and field(edit, "users") == "carol"
    assert 'value="MAINT" checked' in edit
    update = {k: field(edit, k) for k in ("start", "end", "nodes", "users", "accounts")}
    update = {**update, "action": "update", "name": resv, "users": "carol,dave"}
    planned = carol.get("/admin/reservations", params={**update, "flags": "MAINT"})
    assert planned.status_code == 200, planned.text
    shown_argv = f"$ scontrol update ReservationName={resv} Users=carol,dave"
    assert shown_argv in html.unescape(planned.text)
    body = {**update, "flags": "MAINT", "csrf": csrf, "expect": hidden(planned.text, "expect")}
    done = carol.post("/admin/reservations/apply", data={**body, "why": "add dave"})
    assert done.status_code == 303, done.text
    assert (shown(resv) or {}).get("Users") == "carol,dave"

    revert(carol, csrf, carol.get(done.headers["location"]).text, applied_id(done))
    assert shown(resv) == original
    revert(carol, csrf, carol.get("/admin/reservations").text, created)
    assert shown(resv) is None

    bad = carol.get("/admin/reservations", params={**form, "end": "", "duration_minutes": "x"})
    assert bad.status_code == 422 and "whole number" in bad.text
    assert carol.get("/admin/reservations", params={"week": "someday"}).status_code == 422
    carol.close()


def test_the_page_is_only_for_admins(portal: RunningPortal) -> None:
    alice = browser(portal, "alice")
    assert alice.get("/admin/reservations").status_code == 403
    csrf = alice.cookies.get("hpcportal_csrf") or ""
    r = alice.post("/admin/reservations/apply", data={"csrf": csrf, "action": "delete"})
    assert r.status_code == 403
    alice.close()
