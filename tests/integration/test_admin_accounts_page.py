"""The admin area's accounts page on the live dev cluster, through its forms as a browser.

carol plans an account under root (the page shows the exact sacctmgr command), applies
it with the CSRF value and a reason, plans and applies alice's association with
limits, sees the tree and the association's values filled into the form, and reverts
the association from the page's list of changes; ``sacctmgr show assoc`` agrees at each
step. dave (a Slurm coordinator, not a portal admin) sees only physics and no revert
list; alice gets 403. The page answers in English and Korean. An account of the
test's own, removed at the end.
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

PASSWORDS = {"alice": "alice-demo", "carol": "carol-demo", "dave": "dave-demo"}
COLUMNS = "account,user,parentname,fairshare,maxjobs,maxwall,maxtres,qos"


def browser(portal: RunningPortal, user: str) -> httpx.Client:
    client = portal.client(follow_redirects=False)
    r = client.post("/login", data={"username": user, "password": PASSWORDS[user], "next": "/"})
    assert r.status_code == 303, r.text
    return client


def sacctmgr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sacctmgr", *args], capture_output=True, text=True, timeout=60, check=False
    )


def rows(account: str) -> dict[str, dict[str, str]]:
    done = sacctmgr(
        "--parsable2", "show", "assoc", "where", f"account={account}", f"format={COLUMNS}"
    )
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    found = [dict(zip(header.split("|"), ln.split("|"), strict=True)) for ln in lines]
    return {r["User"]: r for r in found if r["Account"] == account}


@pytest.fixture
def account(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster
    name = f"t_ap_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        for user in rows(name):
            if user:
                sacctmgr("-i", "delete", "user", "where", f"Name={user}", f"Account={name}")
        sacctmgr("-i", "delete", "account", "where", f"Name={name}")
    assert rows(name) == {}


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert match, name
    return html.unescape(match[1])


def plan_and_apply(client: httpx.Client, params: dict[str, str], why: str) -> str:
    """Plan through the GET form, post the Apply form as shown; the plan's text."""
    planned = client.get("/admin/accounts", params=params)
    assert planned.status_code == 200, planned.text
    posted = {k: hidden(planned.text, k) for k in params if k != "form"}
    body = {
        **posted,
        "plan_form": hidden(planned.text, "plan_form"),
        "csrf": client.cookies.get("hpcportal_csrf") or "",
        "expect": hidden(planned.text, "expect"),
        "why": why,
    }
    done = client.post("/admin/accounts/apply", data=body)
    assert done.status_code == 303, done.text
    return html.unescape(planned.text)


def test_carol_plans_applies_and_reverts_on_the_page(portal: RunningPortal, account: str) -> None:
    carol = browser(portal, "carol")
    create = {"form": "account", "action": "create", "name": account, "parent": "root"}
    shown = plan_and_apply(carol, {**create, "fairshare": "4"}, "page test")
    assert f"$ sacctmgr -i add account Name={account} Parent=root Description={account}" in shown
    assert rows(account)[""]["Share"] == "4"

    add = {"form": "user", "action": "add", "user": "alice", "account": account}
    limits = {"max_jobs": "2", "max_wall_minutes": "45", "max_tres_per_job": "cpu=2,mem=2G"}
    shown = plan_and_apply(carol, {**add, **limits}, "page test")
    assert "MaxJobs=2 MaxWall=45 MaxTRES=cpu=2,mem=2048M" in shown
    added = rows(account)
    assert (added["alice"]["MaxJobs"], added["alice"]["MaxWall"]) == ("2", "00:45:00")
    assert added["alice"]["MaxTRES"] == "cpu=2,mem=2G"

    page = carol.get("/admin/accounts")
    assert f'data-assoc="alice@{account}"' in page.text
    edit = carol.get("/admin/accounts", params={"edit": account, "edit_user": "alice"}).text
    assert 'value="cpu=2,mem=2048M"' in edit and 'id="user-max_wall_minutes"' in edit

    # A modify through the form filled with her values, then its revert from the list.
    filled = {
        k: html.unescape(v)
        for k, v in re.findall(
            r'<input id="user-[a-z_]+" name="([a-z_]+)"[^>]*value="([^"]*)"', edit
        )
    }
    plan_and_apply(carol, {"form": "user", "action": "modify", **filled, "max_jobs": "5"}, "more")
    assert rows(account)["alice"]["MaxJobs"] == "5"
    listed = carol.get("/admin/accounts").text
    change = re.search(r'action="/admin/accounts/changes/(\d+)/revert"', listed)
    assert change, "the applied change offers a revert"
    revert_expect = hidden(listed[listed.index(change[0]) :], "expect")
    undone = carol.post(
        f"/admin/accounts/changes/{change[1]}/revert",
        data={
            "csrf": carol.cookies.get("hpcportal_csrf") or "",
            "why": "page test done",
            "expect": revert_expect,
        },
    )
    assert undone.status_code == 303, undone.text
    assert rows(account) == added

    bad = carol.get("/admin/accounts", params={**add, "max_jobs": "two"})
    assert bad.status_code == 422 and "whole number" in bad.text
    forged = carol.post(
        "/admin/accounts/apply",
        data={"plan_form": "user", **add, "csrf": "wrong", "why": "x", "expect": json.dumps([])},
    )
    assert forged.status_code == 403
    carol.close()


def test_the_page_in_english_and_korean_for_admins_and_coordinators(
    portal: RunningPortal,
) -> None:
    messages = english_messages()
    carol = browser(portal, "carol")
    plan = {"form": "account", "action": "create", "name": "t_ap_page", "fairshare": "2"}
    for lang in ("en", "ko"):
        carol.cookies.set("hpcportal_lang", lang)
        for params in ({}, plan):
            page = carol.get("/admin/accounts", params=params)
            assert page.status_code == 200, page.text[:300]
            assert f'<html lang="{lang}"' in page.text and 'data-account="physics"' in page.text
            if lang == "ko":
                assert untranslated(page.text, messages) == [], params
    carol.close()

    dave = browser(portal, "dave")
    page = dave.get("/admin/accounts")
    assert page.status_code == 200, page.text[:300]
    assert re.findall(r'data-account="([^"]+)"', page.text) == ["physics"]
    assert 'data-testid="coordinated"' in page.text and "/changes/" not in page.text
    dave.close()
    alice = browser(portal, "alice")
    assert alice.get("/admin/accounts").status_code == 403
    alice.close()
