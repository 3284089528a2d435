"""The admin area's QoS page on the live dev cluster, through its forms as a browser.

carol logs in through the login form, plans a QoS (the page shows the exact sacctmgr
command), applies it with the CSRF value and a reason, sees its values filled into
the form, and reverts it from the page's list of changes; ``sacctmgr show qos`` agrees
at each step. The page answers in English and Korean; alice gets 403; a bad number
is shown as a 422 on the page and nothing runs. A QoS of the test's own, deleted at
the end.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.portal_server import RunningPortal
from tests.webcheck import english_messages, untranslated

PASSWORDS = {"alice": "alice-demo", "carol": "carol-demo"}


def browser(portal: RunningPortal, user: str) -> httpx.Client:
    client = portal.client(follow_redirects=False)
    r = client.post("/login", data={"username": user, "password": PASSWORDS[user], "next": "/"})
    assert r.status_code == 303, r.text
    return client


def shown_row(name: str) -> dict[str, str] | None:
    done = subprocess.run(
        ["sacctmgr", "--parsable2", "show", "qos", "where", f"name={name}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    header, *rows = done.stdout.splitlines()
    found = [dict(zip(header.split("|"), row.split("|"), strict=True)) for row in rows]
    return next((r for r in found if r["Name"] == name), None)


@pytest.fixture
def qos(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ.setdefault("SLURM_CONF", devcluster["slurm_conf"])
    name = f"t_a2_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        subprocess.run(
            ["sacctmgr", "-i", "delete", "qos", "where", f"Name={name}"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert match, name
    return html.unescape(match[1])


def test_carol_plans_applies_and_reverts_on_the_page(portal: RunningPortal, qos: str) -> None:
    carol = browser(portal, "carol")
    csrf = carol.cookies.get("hpcportal_csrf") or ""
    form = {
        "action": "create",
        "name": qos,
        "preempt_mode": "cluster",
        "priority": "5",
        "max_wall_minutes": "45",
        "max_tres_per_user": "cpu=2,mem=2G",
    }
    planned = carol.get("/admin/qos", params=form)
    assert planned.status_code == 200, planned.text
    argv = f"$ sacctmgr -i add qos Name={qos} set Priority=5 MaxTRESPerUser=cpu=2,mem=2048M"
    assert f"{argv} MaxWall=45" in html.unescape(planned.text)
    expect = hidden(planned.text, "expect")
    assert json.loads(expect)[0][:4] == ["sacctmgr", "-i", "add", "qos"]
    assert shown_row(qos) is None

    body = {**{k: hidden(planned.text, k) for k in form}, "csrf": csrf, "expect": expect}
    done = carol.post("/admin/qos/apply", data={**body, "why": "page test"})
    assert done.status_code == 303, done.text
    row = shown_row(qos)
    assert row is not None
    assert (row["Priority"], row["MaxWall"], row["MaxTRESPU"]) == ("5", "00:45:00", "cpu=2,mem=2G")

    page = carol.get(done.headers["location"])
    assert page.status_code == 200 and f'data-qos="{qos}"' in page.text
    edit = carol.get("/admin/qos", params={"edit": qos}).text
    assert 'value="cpu=2,mem=2048M"' in edit and 'id="plan-max_wall_minutes"' in edit
    change = re.search(r'action="/admin/qos/changes/(\d+)/revert"', page.text)
    assert change, "the applied change offers a revert"
    revert_expect = json.dumps([["sacctmgr", "-i", "delete", "qos", "where", f"Name={qos}"]])
    undone = carol.post(
        f"/admin/qos/changes/{change[1]}/revert",
        data={"csrf": csrf, "why": "page test done", "expect": revert_expect},
    )
    assert undone.status_code == 303, undone.text
    assert shown_row(qos) is None

    bad = carol.get("/admin/qos", params={**form, "priority": "five"})
    assert bad.status_code == 422 and "whole number" in bad.text
    refused = carol.post("/admin/qos/apply", data={**body, "csrf": "wrong", "why": "x"})
    assert refused.status_code == 403 and shown_row(qos) is None
    carol.close()


def test_the_page_in_english_and_korean_and_only_for_admins(portal: RunningPortal) -> None:
    messages = english_messages()
    carol = browser(portal, "carol")
    plan = {"action": "create", "name": "t_a2_page", "preempt_mode": "cluster", "priority": "1"}
    for lang in ("en", "ko"):
        carol.cookies.set("hpcportal_lang", lang)
        for params in ({}, plan):
            page = carol.get("/admin/qos", params=params)
            assert page.status_code == 200, page.text[:300]
            assert f'<html lang="{lang}"' in page.text and 'data-qos="normal"' in page.text
            if lang == "ko":
                assert untranslated(page.text, messages) == [], params
    carol.close()
    alice = browser(portal, "alice")
    assert alice.get("/admin/qos").status_code == 403
    alice.close()
