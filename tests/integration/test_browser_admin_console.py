"""The admin area's scheduler and audit pages in a real browser, English and Korean.

A portal sampling sdiag every second: carol opens the scheduler page (figures, the two
charts, RPC users, pending reasons), moves to the audit page through the admin
sub-navigation and filters it; each page is axe-clean and, in Korean, fully translated.
Nothing on the cluster changes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Browser, ViewportSize

from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.webcheck import untranslated

DESKTOP = ViewportSize(width=1280, height=900)


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory, devcluster: dict[str, Any]) -> RunningPortal:
    running = make_portal(sdiag_sample_seconds=1.0)
    carol = running.login("carol")
    deadline = time.monotonic() + 30
    with running.client(headers=carol) as c:
        while time.monotonic() < deadline:
            if len(c.get("/api/v1/admin/scheduler/history", params={"hours": 1}).json()) >= 3:
                break
            time.sleep(0.5)
    return running


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_scheduler_and_audit_pages_are_clean_in_both_languages(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="ko-KR" if lang == "ko" else "en-US")
    try:
        page = context.new_page()
        login(page, portal.url, "carol")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        page.goto(f"{portal.url}/admin/nodes")
        page.click('[data-testid="admin-nav"] a[href="/admin/scheduler"]')
        page.wait_for_url("**/admin/scheduler")
        assert page.get_attribute("html", "lang") == lang
        assert page.is_visible('[data-testid="scheduler-latest"]')
        assert page.locator('[data-testid="scheduler-chart"] polyline').count() == 4
        assert page.locator('[data-testid="rpc-users"] tr[data-user="root"]').count() == 1
        current = page.get_attribute('[data-testid="admin-nav"] [aria-current="page"]', "href")
        assert current == "/admin/scheduler"
        page.click('[data-testid="scheduler-history"] >> xpath=ancestor::details/summary')
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []

        page.click('[data-testid="admin-nav"] a[href="/admin/audit"]')
        page.wait_for_url("**/admin/audit")
        page.fill("#audit-user", "carol")
        page.select_option("#audit-outcome", "refused")
        page.click('[data-testid="audit-filter-button"]')
        page.wait_for_url("**/admin/audit?**")
        assert "outcome=refused" in page.url and "user=carol" in page.url
        assert page.input_value("#audit-user") == "carol"
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []
    finally:
        context.close()
