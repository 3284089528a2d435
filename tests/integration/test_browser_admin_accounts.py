"""The admin accounts page in a real browser (Debian's Chromium), in English and Korean.

carol fills the account form, reads the exact sacctmgr command on the plan, applies it
with a reason, adds alice to the new account through the user form and reverts that
from the page's change list; ``sacctmgr show assoc`` agrees, and axe finds no serious
or critical violation on the tree, the plan and the applied page. dave, a Slurm
coordinator, sees only physics, axe-clean too. An account of the test's own, removed
at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal


def assoc_rows(account: str) -> list[str]:
    done = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"account={account}",
         "format=account,user,parentname,maxjobs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    return sorted(done.stdout.split())


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], capture_output=True, timeout=60, check=False)


@pytest.fixture
def account(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster
    name = f"t_ab_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        sacctmgr("delete", "user", "where", "Name=alice", f"Account={name}")
        sacctmgr("delete", "account", "where", f"Name={name}")
    assert assoc_rows(name) == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_carol_plans_applies_and_reverts_in_the_browser(
    browser: Browser, portal: RunningPortal, account: str, lang: str
) -> None:
    context = browser.new_context(locale="ko-KR" if lang == "ko" else "en-US")
    page = context.new_page()
    login(page, portal.url, "carol")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.goto(f"{portal.url}/admin/accounts")
    assert page.get_attribute("html", "lang") == lang
    assert page.locator('tr[data-account="physics"]').count() == 1
    assert page.locator('tr[data-assoc="dave@physics"]').count() == 1
    assert (found := axe_violations(page)) == [], describe(found)

    page.select_option("#acct-action", "create")
    page.fill("#acct-name", account)
    page.fill("#acct-parent", "root")
    page.fill("#acct-description", "browser test")
    page.click("[data-testid=account-plan-button]")
    commands = page.inner_text("[data-testid=plan-commands]")
    assert f"sacctmgr -i add account Name={account} Parent=root" in commands
    assert (found := axe_violations(page)) == [], describe(found)
    assert assoc_rows(account) == []
    page.fill("#apply-why", "browser test")
    page.click("[data-testid=apply-button]")
    page.wait_for_selector("[data-testid=admin-applied]")
    assert assoc_rows(account) == [f"{account}||root|"]

    page.select_option("#user-action", "add")
    page.fill("#user-user", "alice")
    page.fill("#user-account", account)
    page.fill("#user-max_jobs", "3")
    page.click("[data-testid=user-plan-button]")
    commands = page.inner_text("[data-testid=plan-commands]")
    assert f"sacctmgr -i add user Name=alice Account={account} MaxJobs=3" in commands
    page.fill("#apply-why", "browser test")
    page.click("[data-testid=apply-button]")
    page.wait_for_selector("[data-testid=admin-applied]")
    assert assoc_rows(account) == sorted([f"{account}||root|", f"{account}|alice||3"])
    assert page.locator(f'tr[data-assoc="alice@{account}"]').count() == 1
    assert (found := axe_violations(page)) == [], describe(found)

    change = page.locator("[data-change]").first  # the newest: alice's association
    change.locator("input[name=why]").fill("browser test done")
    change.locator("button[type=submit]").click()
    page.wait_for_selector("[data-testid=admin-applied]")
    assert assoc_rows(account) == [f"{account}||root|"]
    context.close()


def test_a_coordinator_sees_their_accounts(browser: Browser, portal: RunningPortal) -> None:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    login(page, portal.url, "dave")
    page.goto(f"{portal.url}/admin/accounts")
    assert page.locator("tr[data-account]").count() == 1
    assert page.locator('tr[data-account="physics"]').count() == 1
    assert "physics" in page.inner_text("[data-testid=coordinated]")
    assert (found := axe_violations(page)) == [], describe(found)
    context.close()
