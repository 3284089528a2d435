"""The admin reservations page in a real browser (Debian's Chromium), English and Korean.

carol fills the plan form for a maintenance reservation of node004 a year ahead,
reads the exact scontrol command on the plan, applies it with a reason, finds it on
the calendar (the week it starts, marked as maintenance) and reverts it from the
page's change list; ``scontrol show reservation`` agrees at each step, and axe finds no
serious or critical violation on the list, the plan, the applied page and the
calendar week. A reservation of the test's own, deleted as root at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal
from tests.webcheck import untranslated


def shown(name: str) -> str:
    done = subprocess.run(
        ["scontrol", "-o", "show", "reservation", name],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else ""


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
    assert shown(name) == ""


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_carol_plans_applies_and_reverts_a_reservation_in_the_browser(
    browser: Browser, portal: RunningPortal, resv: str, lang: str
) -> None:
    day = (datetime.now(UTC) + timedelta(days=365)).date()
    context = browser.new_context(locale="ko-KR" if lang == "ko" else "en-US")
    page = context.new_page()
    login(page, portal.url, "carol")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.goto(f"{portal.url}/admin/reservations")
    assert page.get_attribute("html", "lang") == lang
    assert page.locator('[data-testid=reservation-calendar] tr[data-node="node004"]').count() == 1
    assert page.inner_text("h1") == ("관리: 예약" if lang == "ko" else "Admin: reservations")
    assert (found := axe_violations(page)) == [], describe(found)
    if lang == "ko":
        assert untranslated(page.content()) == []

    page.select_option("#plan-action", "create")
    page.fill("#plan-name", resv)
    page.fill("#plan-start", f"{day.isoformat()}T08:00")
    page.fill("#plan-duration_minutes", "90")
    page.fill("#plan-nodes", "node004")
    page.fill("#plan-users", "carol")
    page.check('input[name=flags][value="MAINT"]')
    page.click("[data-testid=plan-button]")
    commands = page.inner_text("[data-testid=plan-commands]")
    assert (
        f"scontrol create reservation ReservationName={resv} StartTime={day.isoformat()}T08:00:00 "
        "Duration=90 Nodes=node004 Users=carol Flags=MAINT"
    ) in commands
    assert (found := axe_violations(page)) == [], describe(found)
    if lang == "ko":
        assert untranslated(page.content()) == []
    assert shown(resv) == ""

    page.fill("#apply-why", "browser test")
    page.click("[data-testid=apply-button]")
    page.wait_for_selector("[data-testid=admin-applied]")
    row = shown(resv)
    assert f"StartTime={day.isoformat()}T08:00:00" in row and "Nodes=node004" in row
    assert "Flags=MAINT" in row
    assert page.locator(f'tr[data-reservation="{resv}"]').count() == 1
    assert (found := axe_violations(page)) == [], describe(found)

    page.goto(f"{portal.url}/admin/reservations?week={day.isoformat()}")
    cell = page.locator(f'tr[data-node="node004"] td.resv-maint [data-resv="{resv}"]')
    assert cell.count() == 1
    assert page.locator(f'tr[data-node="node003"] [data-resv="{resv}"]').count() == 0
    assert (found := axe_violations(page)) == [], describe(found)

    change = page.locator("[data-change]").first
    change.locator("input[name=why]").fill("browser test done")
    change.locator("button[type=submit]").click()
    page.wait_for_selector("[data-testid=admin-applied]")
    assert shown(resv) == ""
    context.close()
