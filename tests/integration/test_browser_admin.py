"""The admin area's nodes page in a real browser, English and Korean, axe-clean.

carol opens Admin from the header's user menu, plans a drain of node003 with a reason template,
sees the exact command before applying, applies it through the form (Slurm shows
node003 drained by carol) and reverts it with the button. node003 is resumed by root
whatever happens, as other tests share the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal
from tests.integration.test_admin_nodes import NODE, node_line, restore_node
from tests.webcheck import untranslated

DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def node(devcluster: dict[str, Any]) -> Iterator[str]:
    import os

    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]
    restore_node()
    try:
        yield NODE
    finally:
        restore_node()


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_carol_drains_and_reverts_a_node_from_the_admin_page(
    browser: Browser, portal: RunningPortal, node: str, lang: str
) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="ko-KR" if lang == "ko" else "en-US")
    try:
        page = context.new_page()
        login(page, portal.url, "carol")
        if lang == "ko":
            page.select_option("#lang-switch", "ko")
            page.wait_for_load_state("networkidle")
        page.click('[data-testid="user-menu"]')  # the header's menu: one row at 1280 px
        page.click('[data-testid="nav-admin"]')
        page.wait_for_url("**/admin/nodes")
        assert page.get_attribute("html", "lang") == lang
        problems = axe_violations(page)
        assert not problems, describe(problems)
        if lang == "ko":
            assert untranslated(page.content()) == []

        page.fill("#plan-nodes", node)
        page.select_option("#plan-action", "drain")
        page.fill("#plan-reason", "Memory errors (ECC)")  # a reason template
        page.click('[data-testid="plan-button"]')
        commands = page.text_content('[data-testid="plan-commands"]') or ""
        shown = f"scontrol update NodeName={node} State=DRAIN 'Reason=Memory errors (ECC)'"
        assert shown in commands
        assert "DRAIN" not in node_line()["State"]  # nothing ran yet
        problems = axe_violations(page)
        assert not problems, describe(problems)

        page.fill("#apply-why", f"browser test ({lang})")
        page.click('[data-testid="apply-button"]')
        page.wait_for_selector('[data-testid="admin-applied"]')
        line = node_line()
        assert "DRAIN" in line["State"]
        assert line["Reason"].startswith("Memory errors (ECC) [carol@")

        change = page.get_attribute('[data-testid="admin-changes"] li', "data-change")
        page.fill(f"#why-{change}", "done")
        page.click(f'[data-testid="revert-{change}"]')
        page.wait_for_selector('[data-testid="admin-applied"]')
        assert "DRAIN" not in node_line()["State"]
        problems = axe_violations(page)
        assert not problems, describe(problems)
    finally:
        context.close()
