"""The terminal page in a real browser (Debian's Chromium), in English and Korean.

alice opens the terminal, types ``id -un`` (the screen shows ``alice``) and
``squeue --me`` (Slurm's header); bob's browser cannot attach to alice's terminal
socket; a page of another origin cannot open it with alice's cookie; a reload
reattaches to the same shell; "Open in terminal" in the file manager starts in that
folder; the Paste button types the clipboard; the page and the menu say when the
terminal is switched off. WebSocket-level details are in test_terminal.py.
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.integration.browser import axe_violations, describe, login, screenshot
from tests.integration.portal_server import RunningPortal, free_port

PASSWORDS = {"alice": "alice-demo", "bob": "bob-demo"}
TIMEOUT_MS = 20_000


def logged_in(
    browser: Browser, portal: RunningPortal, user: str, lang: str = "en"
) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="ko-KR" if lang == "ko" else "en-US"
    )
    page = context.new_page()
    login(page, portal.url, user, PASSWORDS[user])
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.close()
    return context


def screen(page: Page) -> str:
    """What the terminal shows (xterm.js's DOM renderer: one element per row)."""
    return page.inner_text(".xterm-rows").replace("\xa0", " ")


def wait_for_screen(page: Page, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, screen(page), re.M | re.S)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} on the screen:\n{screen(page)}")
        page.wait_for_timeout(100)


def run(page: Page, command: str) -> str:
    """Type a command as a person would; return its output between two markers."""
    mark = uuid.uuid4().hex[:6]
    page.click("#terminal")
    page.keyboard.type(f"echo B{mark}; {command}; echo E{mark}")
    page.keyboard.press("Enter")
    return wait_for_screen(page, rf"^B{mark}\s*\n(.*?)^E{mark}")[1]


def open_terminal(context: BrowserContext, portal: RunningPortal, query: str = "") -> Page:
    page = context.new_page()
    page.goto(f"{portal.url}/terminal{query}")
    page.wait_for_selector("#terminal[data-state=attached]", timeout=TIMEOUT_MS)
    return page


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_alice_runs_commands_in_her_terminal(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    context = logged_in(browser, portal, "alice", lang)
    try:
        page = context.new_page()
        page.goto(f"{portal.url}/")
        # The menu has the entry (narrow headers may fold it under "More").
        page.goto(portal.url + str(page.get_attribute("[data-testid=nav-terminal]", "href")))
        page.wait_for_selector("#terminal[data-state=attached]", timeout=TIMEOUT_MS)
        title = "터미널" if lang == "ko" else "Terminal"
        assert page.inner_text("h1") == title
        status = page.inner_text("[data-testid=terminal-status]")
        assert status == ("연결되었습니다." if lang == "ko" else "Connected.")
        assert run(page, "id -un").strip() == "alice"
        assert "JOBID" in run(page, "squeue --me")
        assert page.inner_text("[data-testid=terminal-where]") == "/home/alice"
        problems = axe_violations(page)
        assert not problems, describe(problems)
        screenshot(page, f"terminal-{lang}")
    finally:
        context.close()


def test_bob_cannot_attach_to_alices_terminal_socket(
    browser: Browser, portal: RunningPortal
) -> None:
    alice = logged_in(browser, portal, "alice")
    bob = logged_in(browser, portal, "bob")
    try:
        page = open_terminal(alice, portal)
        terminal_id = page.get_attribute("#terminal", "data-terminal-id")
        assert terminal_id
        bobs = bob.new_page()
        bobs.goto(f"{portal.url}/jobs")
        url = portal.url.replace("http", "ws") + f"/api/v1/terminal/sessions/{terminal_id}/ws"
        answer = bobs.evaluate(SOCKET, url)
        assert "message" not in answer, answer
        own = page.evaluate(SOCKET, url)  # alice herself may (this takes the terminal over)
        assert '"attached"' in own.get("message", ""), own
    finally:
        alice.close()
        bob.close()


SOCKET = """(url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onmessage = (e) => { resolve({message: String(e.data)}); ws.close(); };
    ws.onclose = (e) => resolve({closed: e.code});
    setTimeout(() => resolve({timeout: true}), 10000);
})"""


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>elsewhere</title><p>another origin"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_foreign_origin_cannot_open_the_terminal_socket(
    browser: Browser, portal: RunningPortal
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Elsewhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = logged_in(browser, portal, "alice")
    try:
        page = open_terminal(context, portal)
        terminal_id = page.get_attribute("#terminal", "data-terminal-id")
        url = portal.url.replace("http", "ws") + f"/api/v1/terminal/sessions/{terminal_id}/ws"
        foreign = context.new_page()
        foreign.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        answer = foreign.evaluate(SOCKET, url)
        assert "message" not in answer, answer
        assert run(page, "echo still-mine").strip() == "still-mine"  # untouched
    finally:
        server.shutdown()
        context.close()


def test_a_reload_reattaches_to_the_same_shell(browser: Browser, portal: RunningPortal) -> None:
    context = logged_in(browser, portal, "alice")
    try:
        page = open_terminal(context, portal)
        pid = run(page, "echo $$").strip()
        run(page, "export MARK=kept")
        page.reload()
        page.wait_for_selector("#terminal[data-state=attached]", timeout=TIMEOUT_MS)
        assert run(page, "echo $$").strip() == pid
        assert run(page, "echo $MARK").strip() == "kept"
    finally:
        context.close()


def test_open_in_terminal_starts_in_the_file_managers_folder(
    browser: Browser, portal: RunningPortal
) -> None:
    folder = Path("/home/alice") / f"term-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    shutil.chown(folder, "alice", "research")
    context = logged_in(browser, portal, "alice")
    try:
        page = context.new_page()
        roots = page.request.get(f"{portal.url}/api/v1/files").json()
        home = next(r for r in roots if r["path"] == "/home/alice")
        page.goto(f"{portal.url}/files?root={home['name']}&path={folder.name}")
        page.click("[data-testid=file-terminal]")
        page.wait_for_selector("#terminal[data-state=attached]", timeout=TIMEOUT_MS)
        assert run(page, "pwd").strip() == str(folder)
        assert "cwd=" not in page.url  # a reload reattaches rather than opening anew
    finally:
        context.close()
        shutil.rmtree(folder)


def test_paste_types_the_clipboard(browser: Browser, portal: RunningPortal) -> None:
    context = logged_in(browser, portal, "alice")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    try:
        page = open_terminal(context, portal)
        page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((6*7))')")
        page.click("[data-testid=terminal-paste]")
        wait_for_screen(page, r"echo pasted-\$\(\(6\*7\)\)")  # typed, not yet run
        page.click("#terminal")
        page.keyboard.press("Enter")
        wait_for_screen(page, r"^pasted-42")
    finally:
        context.close()


def test_switched_off_the_page_says_so(browser: Browser, portal: RunningPortal) -> None:
    context = logged_in(browser, portal, "alice", "ko")
    portal.settings.terminal_enabled = False
    try:
        page = context.new_page()
        response = page.goto(f"{portal.url}/terminal")
        assert response is not None and response.status == 403
        assert "관리자가 이 포털의 터미널을 꺼 두었습니다." in page.inner_text("main")
        assert page.query_selector("[data-testid=nav-terminal]") is None
    finally:
        portal.settings.terminal_enabled = True
        context.close()
