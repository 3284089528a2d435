"""Browser tests for issue 17's last items, in English and Korean, on the live dev cluster.

The API docs without a network, a header that stays one row at 1280 px with "99+"
notifications and a bell list that scrolls inside the window, per-user notification
kinds (a job start notifies nobody until switched on), the input files' variables on
the submit form, the account and QoS lists, the templates grid, and the dashboard's
reset confirmation and bounded widget resize.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route
from sqlalchemy import delete

from hpcportal.db.models import Notification
from hpcportal.services.auth import utcnow
from tests.integration import slurm_cli
from tests.integration.browser import login
from tests.integration.portal_server import RunningPortal

DESKTOP = {"width": 1280, "height": 900}
LANGS = ["en", "ko"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def session(
    browser: Browser, portal: RunningPortal, user: str, lang: str, viewport: Any = None
) -> BrowserContext:
    """A context logged in as ``user`` through the form, in ``lang`` (cookie set by the
    language switch, as a person would)."""
    context = browser.new_context(
        viewport=viewport or DESKTOP, locale="ko-KR" if lang == "ko" else "en-US"
    )
    page = context.new_page()
    login(page, portal.url, user)
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    assert page.get_attribute("html", "lang") == lang
    page.close()
    return context


def csrf(context: BrowserContext) -> dict[str, str]:
    token = next(c["value"] for c in context.cookies() if c["name"] == "hpcportal_csrf")
    return {"X-CSRF-Token": token}


# --- API docs without a network ------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_api_docs_render_with_the_network_cut_off(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    context = session(browser, portal, "alice", lang)
    asked_outside: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            asked_outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.goto(f"{portal.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    # Swagger UI draws the operations in batches; a large spec takes a moment to finish.
    page.wait_for_function(
        "document.querySelectorAll('.swagger-ui .opblock-summary-path').length >= 30",
        timeout=30_000,
    )
    operations = page.eval_on_selector_all(".swagger-ui .opblock-summary-path", "els => els.length")
    paths = page.eval_on_selector_all(
        ".swagger-ui .opblock-summary-path", "els => els.map(e => e.textContent)"
    )
    assert operations >= 30, paths
    assert any("/api/v1/jobs" in (p or "") for p in paths), paths
    # Open one operation: its parameters render too (the whole UI works, not a shell).
    page.click(".swagger-ui .opblock-summary >> nth=0")
    page.wait_for_selector(".swagger-ui .opblock-body", timeout=10_000)
    assert asked_outside == []
    context.close()


# --- Header and bell -----------------------------------------------------------------------


def _add_notifications(portal: RunningPortal, user: str, count: int) -> None:
    """``count`` unread job notifications for ``user``, written to the portal's database
    as the detector writes them (one row per job and event)."""
    now = utcnow()
    with portal.services.database.session() as db:
        for n in range(count):
            job_id = str(900_000 + n)
            db.add(Notification(
                username=user, kind="job", job_id=job_id, event="completed",
                title="Job completed",
                body=f'Job "a rather long job name for the list {n}" ({job_id}) completed.',
                params={"job_id": job_id, "job_name": f"a rather long job name for the list {n}",
                        "state": "COMPLETED", "exit_code": 0},
                created_at=now - timedelta(seconds=count - n), read_at=None,
            ))  # fmt: skip


def _clear_notifications(portal: RunningPortal, user: str) -> None:
    with portal.services.database.session() as db:
        db.execute(delete(Notification).where(Notification.username == user))


HEADER_ROWS = """() => {
  const header = document.querySelector('.site-header');
  const rect = (el) => el.getBoundingClientRect();
  const middle = (el) => { const r = rect(el); return r.top + r.height / 2; };
  const entries = [...header.querySelectorAll(
    '.site-nav > ul > li, .site-nav > .nav-more:not([hidden])')];
  const list = header.querySelector('.site-nav > ul');
  const parts = [header.querySelector('.brand'), header.querySelector('.header-tools'), ...entries];
  const middles = parts.map(middle);
  return { height: rect(header).height, spread: Math.max(...middles) - Math.min(...middles),
           navRows: new Set(entries.map((li) => Math.round(rect(li).top))).size,
           overflow: list.scrollWidth - list.clientWidth,
           scrollWidth: document.documentElement.scrollWidth };
}"""


@pytest.mark.parametrize("lang", LANGS)
def test_header_stays_one_row_at_1280_px_with_99_plus_notifications(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    user = "carol"
    _clear_notifications(portal, user)
    context = session(browser, portal, user, lang)
    page = context.new_page()
    page.goto(f"{portal.url}/jobs")
    page.wait_for_load_state("networkidle")
    empty = page.evaluate(HEADER_ROWS)
    try:
        for count, shown in ((12, "12"), (120, "99+")):
            _clear_notifications(portal, user)
            _add_notifications(portal, user, count)
            page.reload()
            badge = page.wait_for_selector("[data-testid=unread-count]:not([hidden])")
            assert badge.get_attribute("data-count") == str(count)
            assert (badge.text_content() or "").strip() == shown
            rows = page.evaluate(HEADER_ROWS)
            assert rows["navRows"] == 1, (count, rows)
            # Brand, every nav entry and the tools share one row's middle.
            assert rows["spread"] < 12, (count, rows)
            assert abs(rows["height"] - empty["height"]) < 1, (count, rows, empty)
            assert rows["height"] < 64, rows
            assert rows["scrollWidth"] <= DESKTOP["width"], rows
            assert rows["overflow"] <= 1, rows  # no entry hidden behind a scroll

        # The bell's list scrolls inside a short window instead of running off it.
        page.set_viewport_size({"width": 1280, "height": 520})
        page.click("[data-testid=bell]")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=bell-list] li').length >= 10"
        )
        box = page.evaluate(
            """() => { const panel = document.querySelector('#bell .menu-panel');
                       const list = document.querySelector('#bell-list');
                       return { bottom: panel.getBoundingClientRect().bottom,
                                height: innerHeight, scrolls: list.scrollHeight > list.clientHeight,
                                overflow: getComputedStyle(list).overflowY,
                                settings: !!panel.querySelector('[data-testid=bell-settings]'),
                              }; }"""
        )
        assert box["bottom"] <= box["height"], box
        assert box["scrolls"] and box["overflow"] == "auto", box
        assert box["settings"], box
    finally:
        _clear_notifications(portal, user)
        context.close()


# --- Notification kinds --------------------------------------------------------------------


def _notifications_of(context: BrowserContext, portal: RunningPortal, job_id: int) -> set[str]:
    answer = context.request.get(f"{portal.url}/api/v1/notifications?limit=200").json()
    return {n["event"] for n in answer["items"] if n.get("job_id") == str(job_id)}


def _wait_for_event(
    context: BrowserContext, portal: RunningPortal, job_id: int, event: str
) -> set[str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        events = _notifications_of(context, portal, job_id)
        if event in events:
            return events
        time.sleep(0.5)
    raise AssertionError(f"no {event!r} notification for job {job_id}")


@pytest.mark.parametrize("lang", LANGS)
def test_a_job_start_notifies_only_after_switching_started_on(
    browser: Browser, portal: RunningPortal, conf: str, lang: str
) -> None:
    context = session(browser, portal, "bob", lang)
    page = context.new_page()
    reset = {"started": False, "completed": True}
    try:
        page.goto(f"{portal.url}/settings/notifications")
        started = page.locator("[data-testid=notify-started]")
        assert (
            not started.is_checked() and page.locator("[data-testid=notify-completed]").is_checked()
        )
        label = page.text_content("label[for=notify-started]") or ""
        assert ("A job starts running" in label) == (lang == "en"), label

        # By default a job that runs and completes tells only that it completed.
        first = slurm_cli.sbatch(conf, "bob", "-J", "quiet-start", "--wrap", "sleep 2")
        assert _wait_for_event(context, portal, first, "completed") == {"completed"}

        # Switched on through the page: the next job's start is a notification too,
        # and it shows in the bell.
        started.check()
        page.click("[data-testid=settings-save]")
        page.wait_for_selector("[data-testid=settings-result]:not(:empty):not(.error)")
        page.reload()
        assert page.locator("[data-testid=notify-started]").is_checked()
        api = context.request.get(f"{portal.url}/api/v1/notifications/settings").json()
        assert api["started"] is True and api["completed"] is True, api
        second = slurm_cli.sbatch(conf, "bob", "-J", "loud-start", "--wrap", "sleep 2")
        assert "started" in _wait_for_event(context, portal, second, "started")
        page.goto(f"{portal.url}/jobs")
        page.click("[data-testid=bell]")
        page.wait_for_function(
            "(id) => (document.querySelector('[data-testid=bell-list]')?.textContent || '')"
            ".includes(id)",
            arg=str(second),
            timeout=15_000,
        )
        # The API refuses an unknown event with a clear 422.
        bad = context.request.put(
            f"{portal.url}/api/v1/notifications/settings",
            data={"begun": True},
            headers=csrf(context),
        )
        assert bad.status == 422, bad.text()
    finally:
        context.request.put(
            f"{portal.url}/api/v1/notifications/settings", data=reset, headers=csrf(context)
        )
        context.close()


# --- Submit form: input files' variables, accounts and QoS ----------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_uploaded_input_files_show_their_variable_and_copy_it(
    browser: Browser, portal: RunningPortal, conf: str, lang: str
) -> None:
    context = session(browser, portal, "alice", lang)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    page = context.new_page()
    job_id = None
    try:
        page.goto(f"{portal.url}/submit")
        page.set_input_files(
            "#f-files",
            files=[
                {"name": "data.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n3,4\n5,6\n"},
                {"name": "data.txt", "mimeType": "text/plain", "buffer": b"second\n"},
            ],
        )
        page.wait_for_selector("[data-testid=uploaded-file] >> nth=1", timeout=30_000)
        items = page.locator("[data-testid=uploaded-file]")
        assert "data.csv (16 B)" in (items.nth(0).text_content() or "")
        chips = page.eval_on_selector_all(
            "[data-testid=upload-variable]", "els => els.map(e => e.textContent)"
        )
        assert chips == ["$FILE_DATA", "$INPUT", "$FILE_DATA_2"], chips
        chip = page.locator("[data-testid=upload-variable] >> nth=0")
        title = chip.get_attribute("title") or ""
        assert title and ("copy" in title.lower()) == (lang == "en"), title

        chip.click()
        assert page.evaluate("() => navigator.clipboard.readText()") == "$FILE_DATA"
        page.wait_for_function(
            "() => (document.querySelector('[data-testid=toast]')?.textContent || '')"
            ".includes('$FILE_DATA')"
        )

        # The names shown are the ones the job gets: a script using them succeeds.
        script = (
            '#!/bin/bash\nset -e\ntest "$(wc -c < "$FILE_DATA")" = 16\n'
            'grep -q second "$FILE_DATA_2"\ntest "$INPUT" = "$FILE_DATA"\n'
        )
        page.fill("#script", script)
        page.fill("#f-time", "2")
        page.click("#submit-button")
        link = page.wait_for_selector("[data-testid=submitted-job]", timeout=30_000)
        found = re.search(r"\d+", link.text_content() or "")
        assert found, link.text_content()
        job_id = int(found.group(0))
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline:
            job = context.request.get(f"{portal.url}/api/v1/jobs/{job_id}").json()
            record = job.get("job") or job.get("accounting") or {}
            state = str(record.get("status", ""))
            if state in ("completed", "failed", "cancelled", "timeout"):
                break
            time.sleep(1)
        assert state == "completed", (state, record)
    finally:
        if job_id is not None:
            slurm_cli.scancel(conf, job_id, missing_ok=True)
        context.close()


def _associations_as(conf: str, user: str) -> dict[str, list[str]]:
    """What ``sacctmgr show associations`` run as ``user`` lists for them: the oracle."""
    out = slurm_cli.run(
        conf,
        ["sacctmgr", "--parsable2", "--noheader", "show", "associations",
         f"user={user}", "format=account,user,qos"],
        user=user,
    )  # fmt: skip
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        account, who, qos = line.split("|")[:3]
        if who == user:
            found[account] = sorted(q for q in qos.split(",") if q)
    return found


@pytest.mark.parametrize("lang", LANGS)
def test_account_and_qos_are_lists_of_the_users_own(
    browser: Browser, portal: RunningPortal, conf: str, lang: str
) -> None:
    for user in ("alice", "carol"):
        expected = _associations_as(conf, user)
        assert expected, user
        context = session(browser, portal, user, lang)
        page = context.new_page()
        page.goto(f"{portal.url}/submit")
        assert page.eval_on_selector("#f-account", "e => e.tagName") == "SELECT"
        assert page.eval_on_selector("#f-qos", "e => e.tagName") == "SELECT"
        options = "e => [...e.options].map(o => o.value)"
        assert page.eval_on_selector("#f-account", options) == ["", *sorted(expected)]
        qos = sorted({q for allowed in expected.values() for q in allowed})
        assert page.eval_on_selector("#f-qos", options) == ["", *qos]
        default_label = page.eval_on_selector("#f-account", "e => e.options[0].textContent")
        assert ("default" in default_label) == (lang == "en"), default_label

        # Choosing an account leaves only its QoS choosable.
        account = sorted(expected)[0]
        page.select_option("#f-account", account)
        enabled = page.eval_on_selector(
            "#f-qos", "e => [...e.options].filter(o => o.value && !o.disabled).map(o => o.value)"
        )
        assert enabled == expected[account], (enabled, expected)
        # And the preview sends them to sbatch.
        page.select_option("#f-qos", expected[account][-1])
        page.click("#preview-button")
        page.wait_for_selector("[data-testid=preview]:not([hidden])", timeout=30_000)
        argv = page.text_content("[data-testid=preview-argv]") or ""
        assert f"--account={account}" in argv and f"--qos={expected[account][-1]}" in argv, argv
        context.close()


# --- Templates grid ------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_templates_page_is_a_responsive_grid(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    context = session(browser, portal, "alice", lang)
    page = context.new_page()
    boxes = "els => els.map(e => [e.offsetLeft, e.offsetTop, e.offsetWidth])"
    page.goto(f"{portal.url}/templates")
    cards = page.eval_on_selector_all("[data-testid=template-card]", boxes)
    assert len(cards) >= 4, cards
    columns = {round(left) for left, _, _ in cards}
    rows = {round(top) for _, top, _ in cards}
    assert len(columns) >= 3 and len(rows) < len(cards), cards
    assert all(width < 500 for _, _, width in cards), cards
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    narrow = page.eval_on_selector_all("[data-testid=template-card]", boxes)
    assert len({round(left) for left, _, _ in narrow}) == 1, narrow
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    context.close()


# --- Dashboard: reset confirmation and bounded resize -------------------------------------


def _widgets(page: Page) -> list[str]:
    return [str(w) for w in page.eval_on_selector_all(
        "[data-widget]", "els => els.map(e => e.dataset.widget)"
    )]  # fmt: skip


@pytest.mark.parametrize("lang", LANGS)
def test_reset_to_preset_asks_first(browser: Browser, portal: RunningPortal, lang: str) -> None:
    context = session(browser, portal, "alice", lang)
    page = context.new_page()
    context.request.post(f"{portal.url}/api/v1/dashboard/layouts/reset", headers=csrf(context))
    page.goto(f"{portal.url}/")
    full = _widgets(page)
    page.click("#dashboard-edit")
    removed = full[-1]
    page.click(f"[data-testid=remove-{removed}]")
    page.wait_for_timeout(1200)  # saved
    questions: list[str] = []
    answer = {"accept": False}

    def on_dialog(dialog: Any) -> None:
        questions.append(dialog.message)
        if answer["accept"]:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.evaluate("() => { window.__stayed = true; }")
    page.click("[data-testid=dashboard-reset]")
    page.wait_for_timeout(800)
    assert len(questions) == 1, questions
    assert ("preset" in questions[0]) == (lang == "en"), questions
    preset = page.eval_on_selector("#preset-pick", "e => e.selectedOptions[0].textContent.trim()")
    assert preset in questions[0], (preset, questions)
    assert page.evaluate("() => window.__stayed") is True  # no reload
    assert removed not in _widgets(page)
    saved = context.request.get(f"{portal.url}/api/v1/dashboard/layouts").json()
    assert removed not in [w["type"] for w in saved["widgets"]], saved

    answer["accept"] = True
    with page.expect_navigation():
        page.click("[data-testid=dashboard-reset]")
    page.wait_for_selector("[data-widget]")
    assert len(questions) == 2
    assert _widgets(page) == full
    context.close()


RESIZE_STATE = """(kind) => {
  const item = document.querySelector(`[data-widget="${kind}"]`);
  const handle = item.querySelector('.ui-resizable-se');
  const r = handle.getBoundingClientRect();
  return { x: r.left + r.width / 2, y: r.top + r.height / 2,
           height: item.getBoundingClientRect().height, rows: Number(item.getAttribute('gs-h')),
           scrollY: window.scrollY, innerHeight: window.innerHeight };
}"""


@pytest.mark.parametrize("lang", LANGS)
def test_resizing_a_widget_at_the_window_bottom_is_bounded(
    browser: Browser, portal: RunningPortal, lang: str
) -> None:
    context = session(browser, portal, "alice", lang, viewport={"width": 1280, "height": 700})
    page = context.new_page()
    context.request.post(f"{portal.url}/api/v1/dashboard/layouts/reset", headers=csrf(context))
    try:
        page.goto(f"{portal.url}/")
        page.click("#dashboard-edit")
        kind = _widgets(page)[0]
        # Scroll so the widget's resize corner sits 160 px above the window's bottom edge.
        page.evaluate(
            """(kind) => {
                 const h = document.querySelector(`[data-widget="${kind}"] .ui-resizable-se`);
                 const y = h.getBoundingClientRect().top + window.scrollY;
                 window.scrollTo(0, Math.max(0, y - (window.innerHeight - 160))); }""",
            kind,
        )
        page.hover(f'[data-widget="{kind}"]')
        before = page.evaluate(RESIZE_STATE, kind)
        assert before["innerHeight"] - before["y"] < 200, before
        page.mouse.move(before["x"], before["y"])
        page.mouse.down()
        # 150 px down to the edge, then hold there a moment (as a hand does).
        page.mouse.move(before["x"], before["y"] + 150, steps=15)
        for wiggle in range(20):
            page.mouse.move(before["x"] + wiggle % 2, before["y"] + 150, steps=1)
            page.wait_for_timeout(30)
        page.mouse.up()
        page.wait_for_timeout(600)
        after = page.evaluate(RESIZE_STATE, kind)
        grown = after["height"] - before["height"]
        # The widget follows the pointer (150 px, rounded to whole 86 px rows).
        assert 0 < grown <= 150 + 86, (before, after)
        assert after["rows"] <= 10, after
    finally:
        context.request.post(f"{portal.url}/api/v1/dashboard/layouts/reset", headers=csrf(context))
        context.close()
