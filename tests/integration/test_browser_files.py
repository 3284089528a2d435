"""The file manager's folder tree in Debian's Chromium: the way down to the current
folder is open on load, other folders open on demand, names stay text."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.integration.browser import axe_violations, describe, login
from tests.integration.portal_server import RunningPortal, portal_settings, run_portal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def portal(
    devcluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    settings = portal_settings(tmp_path_factory.mktemp("browser-files"), devcluster["slurm_conf"])
    with run_portal(settings) as running:
        yield running


def _as_alice(command: str, *args: str) -> None:
    subprocess.run(["runuser", "-u", "alice", "--", "sh", "-c", command, "sh", *args], check=True)


def test_folder_tree_opens_the_way_to_the_current_folder(
    browser: Browser, portal: RunningPortal
) -> None:
    top = f"tree-{uuid.uuid4().hex[:8]}"
    odd = '<img src=x onerror=alert(1)> "q" & co'
    _as_alice(
        'mkdir -p "$HOME/$1/inner/deepest" "$HOME/$1/sibling" "$HOME/$1/$2/x" '
        '&& touch "$HOME/$1/file.txt"',
        top,
        odd,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        login(page, portal.url, "alice")
        page.goto(f"{portal.url}/files/home/{top}/inner")
        tree = page.locator("[data-testid=file-tree]")
        # The way down is open: home > top > inner, whose child is listed.
        tree.locator(f"li[data-path='{top}/inner/deepest']").wait_for(timeout=15_000)
        assert tree.locator("a[aria-current=location]").text_content() == "inner"
        assert tree.locator(f"li[data-path='{top}/sibling']").count() == 1
        # Files are not in the tree; a closed folder opens on demand.
        assert tree.locator(f"li[data-path='{top}/file.txt']").count() == 0
        odd_link = tree.get_by_role("link", name=odd, exact=True)
        assert odd_link.text_content() == odd  # text, not markup
        odd_item = odd_link.locator("xpath=ancestor::li[1]")
        assert page.locator("[data-testid=file-tree] img").count() == 0
        toggle = odd_item.locator(".tree-toggle").first
        assert toggle.get_attribute("aria-expanded") == "false"
        toggle.click()
        odd_item.get_by_role("link", name="x", exact=True).wait_for(timeout=10_000)
        assert toggle.get_attribute("aria-expanded") == "true"
        # Following a link goes to that folder.
        tree.locator(f"li[data-path='{top}/sibling'] a").first.click()
        page.wait_for_url(f"**/files/home/{top}/sibling", timeout=10_000)
        violations = axe_violations(page)
        assert not violations, describe(violations)
    finally:
        context.close()
        _as_alice('rm -rf "$HOME/$1"', top)
