"""The admin QoS page in a real browser (Debian's Chromium), in English and Korean.

carol fills the plan form, reads the exact sacctmgr command on the plan, applies it
with a reason and reverts it from the page's change list; ``sacctmgr show qos``
agrees, and axe finds no serious or critical violation on the list, the plan and
the applied page. A QoS of the test's own, deleted at the end.
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


def qos_row(name: str) -> str:
    done = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "qos", "where", f"name={name}", "format=name,maxwall"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


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


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_carol_plans_applies_and_reverts_a_qos_in_the_browser(
    browser: Browser, portal: RunningPortal, qos: str, lang: str
) -> None:
    context = browser.new_context(locale="ko-KR" if lang == "ko" else "en-US")
    page = context.new_page()
    login(page, portal.url, "carol")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.goto(f"{portal.url}/admin/qos")
    assert page.get_attribute("html", "lang") == lang
    assert page.locator('tr[data-qos="normal"]').count() == 1
    assert (found := axe_violations(page)) == [], describe(found)

    page.select_option("#plan-action", "create")
    page.fill("#plan-name", qos)
    page.fill("#plan-priority", "3")
    page.fill("#plan-max_wall_minutes", "20")
    page.click("[data-testid=plan-button]")
    commands = page.inner_text("[data-testid=plan-commands]")
    assert f"sacctmgr -i add qos Name={qos} set Priority=3 MaxWall=20" in commands
    assert (found := axe_violations(page)) == [], describe(found)
    assert qos_row(qos) == ""

    page.fill("#apply-why", "browser test")
    page.click("[data-testid=apply-button]")
    page.wait_for_selector("[data-testid=admin-applied]")
    assert qos_row(qos) == f"{qos}|00:20:00"
    assert page.locator(f'tr[data-qos="{qos}"]').count() == 1
    assert (found := axe_violations(page)) == [], describe(found)

    change = page.locator("[data-change]").first
    change.locator("input[name=why]").fill("browser test done")
    change.locator("button[type=submit]").click()
    page.wait_for_selector("[data-testid=admin-applied]")
    assert qos_row(qos) == ""
    context.close()
