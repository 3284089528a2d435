"""The file manager in Debian's Chromium: the folder tree (the way down to the current
folder is open on load, other folders open on demand, names stay text); copy, move,
search, trash and restore from the page, in English and Korean; free space and quota;
uploads that show their files without an empty-folder flash; SVG icons."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.integration.browser import axe_violations, describe, login, page_problems, screenshot
from tests.integration.portal_server import RunningPortal
from tests.webcheck import english_messages

pytestmark = pytest.mark.integration


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


LANGS = ["en", "ko"]
#: What the page says, per language, where a test checks words.
WORDS = {
    "en": {"trash": "Trash", "copy": "Copy", "move": "Move", "restore": "Restore"},
    "ko": {"trash": "휴지통", "copy": "복사", "move": "이동", "restore": "복원"},
}


def _context(browser: Browser, portal: RunningPortal, lang: str) -> tuple[BrowserContext, Page]:
    """A logged-in page in ``lang`` (chosen with the language switch, as a person would)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="ko-KR" if lang == "ko" else "en-US"
    )
    page = context.new_page()
    login(page, portal.url, "alice")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    assert page.get_attribute("html", "lang") == lang
    return context, page


def _wait_for(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _row(page: Page, name: str) -> Any:
    return page.locator(f"[data-testid=file-list] tr[data-name='{name}']")


@pytest.mark.parametrize("lang", LANGS)
def test_copy_move_search_trash_and_restore_work_from_the_page(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    top = f"ops-{lang}-{uuid.uuid4().hex[:8]}"
    home = Path("/home/alice") / top
    _as_alice(
        'mkdir -p "$HOME/$1/sub" && printf "a needle here\\n" > "$HOME/$1/data.txt" '
        '&& printf "hay\\n" > "$HOME/$1/other.txt"',
        top,
    )
    context, page = _context(browser, portal, lang)
    words = WORDS[lang]
    try:
        page.goto(f"{portal.url}/files/home/{top}")
        page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
        # Copy data.txt into sub/ under a new name, through the destination dialog.
        copy = _row(page, "data.txt").locator("[data-testid=file-copy]")
        assert copy.text_content() == words["copy"]
        copy.click()
        page.fill("[data-testid=dest-folder]", f"{top}/sub")
        page.fill("[data-testid=dest-name]", "copied.txt")
        page.click("[data-testid=dest-ok]")
        _wait_for(lambda: (home / "sub" / "copied.txt").exists(), "the copy")
        assert (home / "data.txt").read_text() == (home / "sub" / "copied.txt").read_text()
        # Move other.txt into sub/: it leaves the list without a reload.
        page.evaluate("window.__samePage = true")
        move = _row(page, "other.txt").locator("[data-testid=file-move]")
        assert move.text_content() == words["move"]
        move.click()
        page.fill("[data-testid=dest-folder]", f"{top}/sub")
        page.click("[data-testid=dest-ok]")
        _row(page, "other.txt").wait_for(state="detached", timeout=15_000)
        assert (home / "sub" / "other.txt").exists() and not (home / "other.txt").exists()
        assert page.evaluate("window.__samePage") is True
        # Search names and contents below this folder: both copies of the needle.
        page.fill("[data-testid=search-name]", "*.txt")
        page.fill("[data-testid=search-text]", "needle")
        page.click("[data-testid=search-submit]")
        hits = page.locator("#search-list a")
        hits.nth(1).wait_for(timeout=15_000)
        page.wait_for_function(
            "() => !document.getElementById('search-status').textContent.includes('…')"
        )
        found = sorted(hits.all_text_contents())
        assert [h.strip() for h in found] == [f"{top}/data.txt", f"{top}/sub/copied.txt"], found
        # Delete the copy (to the trash), then restore it from the trash panel.
        page.goto(f"{portal.url}/files/home/{top}/sub")
        page.on("dialog", lambda dialog: dialog.accept())
        _row(page, "copied.txt").locator("[data-testid=file-delete]").click()
        _row(page, "copied.txt").wait_for(state="detached", timeout=15_000)
        assert not (home / "sub" / "copied.txt").exists()
        trash = page.locator("[data-testid=file-trash]")
        assert trash.text_content() == words["trash"]
        trash.click()
        item = page.locator("[data-testid=trash-row][data-name='copied.txt']").first
        item.wait_for(timeout=15_000)
        restore = item.locator("[data-testid=trash-restore]")
        assert restore.text_content() == words["restore"]
        violations = axe_violations(page)
        assert not violations, describe(violations)
        restore.click()
        _row(page, "copied.txt").wait_for(timeout=15_000)
        assert (home / "sub" / "copied.txt").read_text() == "a needle here\n"
    finally:
        context.close()
        _as_alice('rm -rf "$HOME/$1"', top)


@pytest.mark.parametrize("lang", LANGS)
def test_free_space_and_quota_are_shown(browser: Browser, portal: RunningPortal, lang: str) -> None:
    context, page = _context(browser, portal, lang)
    try:
        page.goto(f"{portal.url}/files/home")
        area = page.locator("[data-testid=usage-area][data-root=home]")
        area.wait_for(timeout=15_000)
        space = area.locator("[data-testid=usage-space]").text_content() or ""
        quota = area.locator("[data-testid=usage-quota]").text_content() or ""
        assert any(unit in space for unit in ("GB", "MB", "TB")), space
        assert quota.strip(), "no quota line"
        assert ("할당량" in quota) if lang == "ko" else ("quota" in quota.lower()), quota
        assert 0 <= float(area.locator("meter").get_attribute("value") or -1) <= 100
    finally:
        context.close()


#: Records, in the page, whether "This folder is empty" is on screen once a file is up.
FLASH_RECORDER = """() => {
  window.__flash = false;
  window.__samePage = true;
  const check = () => {
    const done = document.querySelector('#upload-list li[data-done]');
    const empty = document.querySelector('[data-testid=file-list] td.empty');
    if (done && empty && empty.offsetParent !== null) window.__flash = true;
    const count = document.querySelectorAll('#upload-list li[data-done]').length;
    while (window.__doneAt.length < count) window.__doneAt.push(performance.now());
  };
  window.__doneAt = [];
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true,
                                                      attributes: true});
  const frame = () => { check(); requestAnimationFrame(frame); };
  frame();
}"""


@pytest.mark.parametrize("lang", LANGS)
def test_uploads_show_their_files_without_an_empty_flash_and_icons_are_svg(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    top = f"up-{lang}-{uuid.uuid4().hex[:8]}"
    _as_alice('mkdir -p "$HOME/$1"', top)
    context, page = _context(browser, portal, lang)
    requests: list[str] = []
    page.on(
        "request",
        lambda r: requests.append(r.method) if "/api/v1/uploads/tus" in r.url else None,
    )
    try:
        page.goto(f"{portal.url}/files/home/{top}")
        assert page.locator("[data-testid=file-list] td.empty").is_visible()
        page.evaluate(FLASH_RECORDER)
        files = [
            {"name": f"small-{i}.txt", "mimeType": "text/plain", "buffer": f"{i}\n".encode() * 100}
            for i in range(3)
        ]
        started = time.perf_counter()
        page.evaluate("window.__startedAt = performance.now()")
        page.set_input_files("[data-testid=file-upload]", files)
        rows = page.locator("[data-testid=file-list] tr[data-path]")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=file-list] tr[data-path]').length === 3"
        )
        seconds = time.perf_counter() - started
        done = page.evaluate("window.__doneAt.map((t) => Math.round(t - window.__startedAt))")
        print(f"3 small files (3 at a time): each whole after {done} ms, all listed after "
              f"{seconds * 1000:.0f} ms ({lang})")  # fmt: skip
        assert page.evaluate("window.__samePage") is True, "the page reloaded"
        assert page.evaluate("window.__flash") is False, "'This folder is empty' flashed"
        # Each small file took one request (tus creation-with-upload), no PATCH.
        assert requests.count("POST") == 3 and "PATCH" not in requests, requests
        for i in range(3):
            assert Path(f"/home/alice/{top}/small-{i}.txt").read_bytes() == f"{i}\n".encode() * 100
        # The icons are SVG drawn from the page's sprite, not emoji.
        first = rows.first.locator("svg.file-icon")
        assert first.get_attribute("data-icon") == "file"
        box = page.evaluate(
            "() => { const u = document.querySelector('tr[data-path] svg.file-icon use');"
            " const b = u.getBBox(); return [b.width, b.height]; }"
        )
        assert box[0] > 0 and box[1] > 0, box
        names = "".join(rows.locator("th").all_text_contents())
        assert not [c for c in names if ord(c) >= 0x1F000], names
    finally:
        context.close()
        _as_alice('rm -rf "$HOME/$1"', top)


@pytest.mark.parametrize("lang", LANGS)
def test_the_file_manager_with_its_panels_open_passes_the_page_checks(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    """With search results, the trash and the storage box shown: no serious axe finding,
    no untranslated text in Korean, and no horizontal scroll at phone width."""
    top = f"checks-{lang}-{uuid.uuid4().hex[:8]}"
    _as_alice('mkdir -p "$HOME/$1/sub" && echo x > "$HOME/$1/a.txt"', top)
    problems: list[str] = []
    try:
        for desktop, viewport in ((True, {"width": 1280, "height": 900}),
                                  (False, {"width": 390, "height": 844})):  # fmt: skip
            context, page = _context(browser, portal, lang)
            page.set_viewport_size(viewport)
            page.goto(f"{portal.url}/files/home/{top}")
            page.locator("[data-testid=usage-area]").first.wait_for(timeout=15_000)
            page.fill("[data-testid=search-name]", "*")
            page.click("[data-testid=search-submit]")
            page.locator("#search-list a").first.wait_for(timeout=15_000)
            page.click("[data-testid=file-trash]")
            page.wait_for_function(
                "() => document.getElementById('trash-status').textContent.trim() !== ''"
                " && !document.getElementById('trash-status').textContent.includes('…')"
            )
            page.wait_for_load_state("networkidle")
            kind = "desktop" if desktop else "phone"
            screenshot(page, f"screenshots/files-panels-{lang}-{kind}")
            problems += page_problems(
                page, f"/files ({'desktop' if desktop else 'phone'})", lang=lang,
                desktop=desktop, weight=0, budget=1, messages=english_messages(),
                phone_width=viewport["width"],
            )  # fmt: skip
            context.close()
    finally:
        _as_alice('rm -rf "$HOME/$1"', top)
    assert not problems, problems
