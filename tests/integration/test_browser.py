"""Real-browser tests: Debian's Chromium driven by Playwright against a running portal.

They follow what a person does: log in through the form, submit from a site template,
watch the job change state on the jobs page without reloading, read its output, get
the notification; and check privacy, cross-site WebSockets, dashboards, Korean, the
accessibility checker, asset budgets and screenshots.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.integration import slurm_cli
from tests.integration.browser import (
    dark_mode_problems,
    login,
    page_problems,
    screenshot,
)
from tests.integration.portal_server import (
    RunningPortal,
    free_port,
)
from tests.webcheck import english_messages

PASSWORDS = {"alice": "alice-demo", "bob": "bob-demo", "carol": "carol-demo"}
# The session page and the shared view need a running desktop: test_browser_sessions.py
# gives them (and /apps, /sessions with sessions on them) the same checks.
PAGES = [
    "/",
    "/jobs",
    "/submit",
    "/apps",
    "/sessions",
    "/files",
    "/templates",
    "/nodes",
    "/partitions",
    "/accounting",
    "/settings/notifications",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BUDGET_BYTES = 200 * 1024


def session(
    browser: Browser, portal: RunningPortal, user: str, *, lang: str = "en", viewport: Any = None
) -> BrowserContext:
    """A browser context logged in as ``user`` through the login form."""
    context = browser.new_context(
        viewport=viewport or DESKTOP, locale="ko-KR" if lang == "ko" else "en-US"
    )
    page = context.new_page()
    login(page, portal.url, user, PASSWORDS[user])
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.close()
    return context


def template_id(page: Page, portal: RunningPortal, slug: str) -> int:
    listing = page.request.get(f"{portal.url}/api/v1/templates?scope=site").json()
    return int(next(t["id"] for t in listing["items"] if t["slug"] == slug))


def test_alice_submits_from_a_template_and_watches_it_live(
    browser: Browser, portal: RunningPortal, conf: str
) -> None:
    # bob's jobs hold every node of the normal partition until the page has shown alice's
    # job waiting; a fixed sleep was not enough when a slow login outlasted it.
    blockers = [
        slurm_cli.sbatch(
            conf, "bob", "--exclusive", "-p", "normal", "-t", "5", "--wrap", "sleep 300"
        )
        for _ in range(4)
    ]
    try:
        slurm_cli.wait_running(conf, *blockers)
        _watch_template_job(browser, portal, conf, blockers)
    finally:
        slurm_cli.scancel(conf, *blockers, missing_ok=True)


def _watch_template_job(
    browser: Browser, portal: RunningPortal, conf: str, blockers: list[int]
) -> None:
    context = session(browser, portal, "alice")
    page = context.new_page()
    page.goto(f"{portal.url}/submit")
    page.select_option("#template-pick", str(template_id(page, portal, "python-script")))
    page.fill("[data-param=code]", "import time; time.sleep(6); print('hello from the template')")
    page.click("#submit-button")
    link = page.wait_for_selector("[data-testid=submitted-job]", timeout=30_000)
    found = re.search(r"\d+", link.text_content() or "")
    assert found, link.text_content()
    job_id = found.group(0)

    page.goto(f"{portal.url}/jobs")
    page.evaluate("() => { window.__sameDocument = true; }")
    page.wait_for_selector(f'tr[data-job-id="{job_id}"]', timeout=30_000)
    page.evaluate(
        """(id) => {
        window.__states = [];
        const note = () => {
          const cell = document.querySelector(`tr[data-job-id="${id}"] [data-testid=job-state]`);
          const status = cell && cell.dataset.status;
          if (status && window.__states[window.__states.length - 1] !== status) {
            window.__states.push(status);
          }
        };
        note();
        new MutationObserver(note).observe(document.body,
          {subtree: true, childList: true, attributes: true, characterData: true});
        }""",
        job_id,
    )
    page.wait_for_function("() => window.__states.length > 0", timeout=30_000, polling=100)
    slurm_cli.scancel(conf, *blockers)  # now alice's job may start
    page.wait_for_function(
        "() => window.__states.includes('completed')", timeout=90_000, polling=200
    )
    states = page.evaluate("() => window.__states")
    assert page.evaluate("() => window.__sameDocument") is True  # never reloaded
    assert states[0] == "queued", states
    assert "running" in states and states[-1] == "completed", states
    assert states.index("running") < states.index("completed")

    page.click(f'tr[data-job-id="{job_id}"] [data-testid=job-link]')
    page.wait_for_function(
        "() => (document.querySelector('[data-testid=output]')?.textContent || '')"
        ".includes('hello from the template')",
        timeout=30_000,
    )
    badge = page.wait_for_selector("[data-testid=unread-count]:not([hidden])", timeout=30_000)
    assert int(badge.get_attribute("data-count") or 0) >= 1
    page.click("[data-testid=bell]")
    page.wait_for_function(
        "(id) => (document.querySelector('[data-testid=bell-list]')?.textContent || '')"
        ".includes(id)",
        arg=job_id,
        timeout=15_000,
    )
    screenshot(page, "flow-job-detail")
    slurm_cli.scancel(conf, *blockers)
    context.close()

    # bob: public fields yes; alice's output and notifications never.
    bob = session(browser, portal, "bob")
    bob_page = bob.new_page()
    bob_page.goto(f"{portal.url}/jobs/{job_id}")
    bob_page.wait_for_timeout(3000)
    assert "hello from the template" not in (bob_page.content())
    notes = bob_page.request.get(f"{portal.url}/api/v1/notifications").json()
    assert all(str(n.get("job_id")) != job_id for n in notes.get("items", notes))
    output = bob_page.request.get(f"{portal.url}/api/v1/jobs/{job_id}/output")
    assert output.status == 403
    bob.close()


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>elsewhere</title><p>another origin"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_websocket_from_a_foreign_origin_is_refused(
    browser: Browser, portal: RunningPortal
) -> None:
    """Cross-site WebSocket hijacking: same site (127.0.0.1), another origin (port)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = session(browser, portal, "alice")
    try:
        script = """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onmessage = (e) => resolve({message: e.data});
            ws.onclose = (e) => resolve({closed: e.code});
            setTimeout(() => resolve({timeout: true}), 10000);
        })"""
        ws_url = portal.url.replace("http", "ws") + "/api/v1/ws"
        own = context.new_page()
        own.goto(f"{portal.url}/jobs")
        assert "hello" in own.evaluate(script, ws_url).get("message", "")
        foreign = context.new_page()
        foreign.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        answer = foreign.evaluate(script, ws_url)
        assert "message" not in answer, answer
    finally:
        server.shutdown()
        context.close()


def test_dashboard_layout_survives_a_reload(browser: Browser, portal: RunningPortal) -> None:
    context = session(browser, portal, "alice")
    page = context.new_page()
    page.request.post(f"{portal.url}/api/v1/dashboard/layouts/reset", headers=csrf(context))
    page.goto(f"{portal.url}/")
    widgets = page.eval_on_selector_all("[data-widget]", "els => els.map(e => e.dataset.widget)")
    assert len(widgets) >= 3
    removed = widgets[-1]
    page.click("#dashboard-edit")
    page.click(f"[data-testid=remove-{removed}]")
    moved = widgets[0]
    page.click(f'[data-widget="{moved}"] [data-move=right]')
    before = layout(page)
    done = page.query_selector("#dashboard-done")
    if done is not None and done.is_visible():
        done.click()
    page.wait_for_timeout(1500)
    saved = page.request.get(f"{portal.url}/api/v1/dashboard/layouts").json()
    page.reload()
    page.wait_for_selector("[data-widget]")
    after = layout(page)
    assert removed not in after and after == before, (before, after, saved)
    page.request.post(f"{portal.url}/api/v1/dashboard/layouts/reset", headers=csrf(context))
    context.close()


def layout(page: Page) -> dict[str, tuple[str | None, ...]]:
    return {
        str(e.get_attribute("data-widget")): (
            e.get_attribute("gs-x"),
            e.get_attribute("gs-y"),
            e.get_attribute("gs-w"),
            e.get_attribute("gs-h"),
        )
        for e in page.query_selector_all("[data-widget]")
    }


def csrf(context: BrowserContext) -> dict[str, str]:
    token = next(c["value"] for c in context.cookies() if c["name"] == "hpcportal_csrf")
    return {"X-CSRF-Token": token}


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_page_screenshots_accessibility_budget_and_translation(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    messages = english_messages()
    problems: list[str] = []
    for viewport_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = session(browser, portal, "carol", lang=lang, viewport=viewport)
        page = context.new_page()
        for path in PAGES:
            sizes: dict[str, int] = {}

            def count(response: Any, sizes: dict[str, int] = sizes) -> None:
                if response.request.resource_type in ("script", "stylesheet"):
                    sizes[response.url] = len(response.body())

            page.on("response", count)
            page.goto(f"{portal.url}{path}")
            page.wait_for_load_state("networkidle")
            page.remove_listener("response", count)
            name = path.strip("/") or "dashboard"
            screenshot(page, f"screenshots/{name}-{lang}-{viewport_name}")
            problems += page_problems(
                page,
                path,
                lang=lang,
                desktop=viewport_name == "desktop",
                weight=sum(sizes.values()),
                budget=BUDGET_BYTES,
                messages=messages,
                phone_width=PHONE["width"],
            )
        page.goto(f"{portal.url}/")
        problems += dark_mode_problems(page, lang)
        context.close()
    assert not problems, "\n".join(problems)


def test_job_name_with_markup_renders_as_text(
    browser: Browser, portal: RunningPortal, conf: str
) -> None:
    name = '"><img src=x onerror=alert(1)>'
    job_id = slurm_cli.sbatch(conf, "alice", "--hold", "-J", name, "--wrap", "true")
    context = session(browser, portal, "alice")
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        for path in ("/jobs", f"/jobs/{job_id}", "/"):
            page.goto(f"{portal.url}{path}")
            page.wait_for_load_state("networkidle")
        page.goto(f"{portal.url}/jobs/{job_id}")
        assert name in (page.text_content("[data-testid=job-name]") or "")
        assert page.query_selector("img[src=x]") is None
        time.sleep(0.5)
        assert dialogs == []
    finally:
        slurm_cli.scancel(conf, job_id)
        context.close()


def _as_alice(command: str, *args: str) -> None:
    subprocess.run(["runuser", "-u", "alice", "--", "sh", "-c", command, "sh", *args], check=True)


def test_file_manager_shows_markup_names_as_text_and_uploads(
    browser: Browser, portal: RunningPortal
) -> None:
    name = '"><img src=x onerror=alert(1)>.txt'
    path = f"/home/alice/{name}"
    folder = f"drop-{uuid.uuid4().hex[:8]}"
    upload = "upload.dat"
    _as_alice('echo hi > "$1"', path)
    context = session(browser, portal, "alice")
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"{portal.url}/files")
        page.wait_for_load_state("networkidle")
        names = page.eval_on_selector_all(
            "tr[data-testid=file-row]", "rows => rows.map(r => r.dataset.name)"
        )
        assert name in names
        row = page.locator("tr[data-testid=file-row]").filter(has_text="onerror")
        assert name in (row.locator("[data-testid=file-link]").text_content() or "")
        row.locator("[data-testid=file-link]").click()
        page.wait_for_function(
            "() => (document.querySelector('[data-testid=preview-body] pre')?.textContent"
            " || '').includes('hi')",
            timeout=15_000,
        )
        assert page.text_content("[data-testid=preview-name]") == name

        # The file changes behind the editor's back: saving says so and keeps nothing.
        page.click("[data-testid=preview-edit]")
        _as_alice('echo changed > "$1"', path)
        page.fill("#editor-text", "mine")
        page.click("[data-testid=editor-save]")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=editor-result]')"
            ".classList.contains('error')",
            timeout=15_000,
        )
        with open(path) as f:
            assert f.read() == "changed\n"
        assert page.query_selector("img[src=x]") is None
        time.sleep(0.5)
        assert dialogs == []

        # A new folder through the page, then an upload into it through the file input:
        # two tus chunks, then the file is listed.
        page.click("[data-testid=file-mkdir]")
        page.fill("[data-testid=name-input]", folder)
        page.click("[data-testid=name-ok]")
        page.locator("tr[data-testid=file-row]", has_text=folder).wait_for(timeout=15_000)
        page.goto(f"{portal.url}/files/home/{folder}")
        page.set_input_files(
            "#file-upload",
            files=[
                {
                    "name": upload,
                    "mimeType": "application/octet-stream",
                    "buffer": b"x" * (5 * 1024 * 1024 + 17),
                }
            ],
        )
        try:
            page.wait_for_selector(f'tr[data-name="{upload}"]', timeout=60_000)
        except Exception:
            raise AssertionError(page.text_content("[data-testid=upload-list]")) from None
        assert os.path.getsize(f"/home/alice/{folder}/{upload}") == 5 * 1024 * 1024 + 17
        screenshot(page, "files-after-upload")
    finally:
        context.close()
        if os.path.exists(path):
            os.unlink(path)
        shutil.rmtree(f"/home/alice/{folder}", ignore_errors=True)
