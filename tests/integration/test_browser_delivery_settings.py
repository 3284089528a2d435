"""The notification settings page in Chromium, English and Korean (issue 15.2): a user
adds an email channel through the form, confirms it with the code (read here from the
outbox: no SMTP server in this module, so the message waits there), subscribes to
"job failed" with quiet hours, sends a test message, sees the delivery history, and is
told why a webhook URL into the site's network is refused. Each state passes axe and,
in Korean, shows no untranslated text. Screenshots for docs/screenshots.md.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from hpcportal.db.delivery_tables import DeliveryChannel, OutboxMessage
from tests.integration.browser import login, page_problems, screenshot
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.webcheck import english_messages, page_assets

DESKTOP: Any = {"width": 1280, "height": 900}
PATH = "/settings/notifications"
#: One user per language, so each run starts from no channels.
USERS = {"en": "alice", "ko": "bob"}


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    return make_portal()


def problems(page: Page, lang: str) -> list[str]:
    return page_problems(page, PATH, lang=lang, desktop=True,
                         weight=sum(page_assets(page.content()).values()),
                         budget=260 * 1024, messages=english_messages(),
                         phone_width=390)  # fmt: skip


def code_for(portal: RunningPortal, owner: str) -> str:
    with portal.services.database.session() as session:
        body = session.scalars(
            select(OutboxMessage.body_text)
            .join(DeliveryChannel, DeliveryChannel.id == OutboxMessage.channel_id)
            .where(DeliveryChannel.owner == owner, OutboxMessage.event == "channel_verification")
            .order_by(OutboxMessage.id.desc())
        ).first()
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_a_user_adds_confirms_and_subscribes_a_channel(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    user = USERS[lang]
    context = browser.new_context(viewport=DESKTOP, locale="ko-KR" if lang == "ko" else "en-US")
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        login(page, portal.url, user, f"{user}-demo")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        page.goto(f"{portal.url}{PATH}")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("[data-testid=channels-empty]")).to_be_visible()
        found = problems(page, lang)

        # A webhook into the site's network: refused, and the form says why.
        page.select_option("[data-testid=channel-kind]", "webhook")
        page.fill("[data-testid=channel-name]", "internal")
        page.fill("[data-testid=channel-target]", "http://127.0.0.1:9/hook")
        page.click("[data-testid=channel-submit]")
        expect(page.locator("[data-testid=channel-result]")).to_contain_text("not allowed")

        page.select_option("[data-testid=channel-kind]", "email")
        page.fill("[data-testid=channel-name]", "Lab mail")
        page.fill("[data-testid=channel-target]", f"{user}@hpc.example.org")
        page.click("[data-testid=channel-submit]")
        expect(page.locator("[data-testid=channels-table] tbody tr")).to_have_count(1)
        expect(page.locator("[data-testid=verify-code]")).to_be_visible()
        found += problems(page, lang)
        screenshot(page, f"notification-channels-unconfirmed-{lang}-desktop")

        page.fill("[data-testid=verify-code]", code_for(portal, user))
        page.click("[data-testid=verify-submit]")
        expect(page.locator("[data-testid=channel-test]")).to_be_visible()

        page.select_option("[data-testid=sub-event]", "job_failed")
        page.select_option("[data-testid=sub-mode]", "immediate")
        page.fill("[data-testid=sub-quiet-start]", "22:00")
        page.fill("[data-testid=sub-quiet-end]", "07:00")
        page.fill("[data-testid=sub-zone]", "Asia/Seoul")
        page.click("[data-testid=subscription-submit]")
        expect(page.locator("[data-testid=subscriptions-table] tbody tr")).to_have_count(1)
        expect(page.locator("[data-testid=subscriptions-table]")).to_contain_text("22:00")

        page.click("[data-testid=channel-test]")
        expect(page.locator("[data-testid=channels-result]")).not_to_be_empty()
        page.reload()
        expect(page.locator("[data-testid=deliveries-table] tbody tr")).to_have_count(2)
        found += problems(page, lang)
        screenshot(page, f"notification-channels-{lang}-desktop")
        assert not found, "\n".join(found)
    finally:
        context.close()
