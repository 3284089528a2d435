"""The reports pages in Chromium, English and Korean (issue 14.4): alice fills the form
(the preview chart is drawn from POST /api/v1/reports/preview), asks for a PDF and a
CSV, sees them move to "Ready" without reloading (htmx), downloads one, deletes one;
the schedule form adds a weekly schedule. Each page passes axe and, in Korean, shows
no untranslated text. Screenshots for docs/screenshots.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.integration.browser import login, page_problems, screenshot
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.webcheck import english_messages, page_assets

DESKTOP: Any = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    return make_portal(report_worker_seconds=0.5)


def session(browser: Browser, portal: RunningPortal, lang: str) -> BrowserContext:
    context = browser.new_context(viewport=DESKTOP, locale="ko-KR" if lang == "ko" else "en-US",
                                  accept_downloads=True)  # fmt: skip
    page = context.new_page()
    login(page, portal.url, "alice", "alice-demo")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.close()
    return context


def problems(page: Page, path: str, lang: str) -> list[str]:
    return page_problems(page, path, lang=lang, desktop=True,
                         weight=sum(page_assets(page.content()).values()),
                         budget=260 * 1024, messages=english_messages(),
                         phone_width=390)  # fmt: skip


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_alice_asks_for_reports_and_downloads_them(
    browser: Browser, portal: RunningPortal, lang: str, tmp_path: Path
) -> None:
    context = session(browser, portal, lang)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        page.goto(f"{portal.url}/reports")
        rows = page.locator("[data-testid=reports-table] tbody tr")
        before = rows.count()  # the other language's run left one
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("[data-testid=nav-reports]")).to_have_attribute("aria-current", "page")
        page.click("[data-testid=report-new]")
        page.wait_for_url("**/reports/new")
        page.select_option("[data-testid=report-kind]", "custom")
        page.select_option("[data-testid=report-language]", lang)
        expect(page.locator("[data-testid=report-dimensions]")).to_be_visible()
        # The preview is drawn from the API's document: a chart or the no-chart note.
        sections = page.locator("[data-testid=preview-sections]")
        expect(sections).not_to_have_text("", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelector('#preview-chart .uplot') !== null"
            " || (document.querySelector('#preview-chart').textContent || '').length > 0",
            timeout=30_000,
        )
        found = problems(page, "/reports/new", lang)
        screenshot(page, f"reports-new-{lang}-desktop")
        page.check("#format-csv")
        page.click("[data-testid=report-submit]")
        page.wait_for_url("**/reports#report-*")
        expect(rows).to_have_count(before + 2)
        # Ready without a reload: htmx redraws the list while one is queued or running.
        expect(page.locator("tr[data-state=done]")).to_have_count(before + 2, timeout=120_000)
        expect(page.locator("[data-testid=reports-list]")).not_to_have_attribute(
            "hx-get", "/reports/partials/list"
        )
        found += problems(page, "/reports", lang)
        screenshot(page, f"reports-{lang}-desktop")
        with page.expect_download() as download:
            page.locator("tr[data-state=done]").first.locator("[data-testid=download-xlsx]").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.suffix == ".xlsx" and saved.read_bytes().startswith(b"PK")
        page.locator("[data-testid=report-delete]").first.click()
        expect(rows).to_have_count(before + 1)

        page.goto(f"{portal.url}/reports/schedules")
        page.fill("[data-testid=schedule-name]", f"Weekly {lang}")
        page.select_option("[data-testid=schedule-frequency]", "weekly")
        page.select_option("[data-testid=schedule-zone]", "Asia/Seoul")
        page.click("[data-testid=schedule-submit]")
        expect(page.locator("[data-testid=schedules-table] tbody tr")).to_have_count(1)
        found += problems(page, "/reports/schedules", lang)
        page.locator("[data-testid=schedule-delete]").click()
        expect(page.locator("[data-testid=schedules-table] tbody tr")).to_have_count(0)
        assert not found, "\n".join(found)
    finally:
        context.close()
