"""Debian's Chromium driven by Playwright for the browser tests (no browser download).

Chromium starts headless with the flags that keep it off the network
(background networking, component updates, sync), so a test only talks to the
portal on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("HPCPORTAL_TEST_ARTIFACTS", "test-artifacts")).resolve()
FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-quic",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--password-store=basic",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise AssertionError("Debian's chromium is missing: scripts/test.sh installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def login(page: Page, base_url: str, username: str, password: str | None = None) -> None:
    """Log in through the login form, as a person would (demo password by default)."""
    page.goto(f"{base_url}/login")
    page.fill("#login-username", username)
    page.fill("#login-password", password or f"{username}-demo")
    page.click("#login-submit")
    page.wait_for_url(lambda url: "/login" not in url, timeout=20_000)


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[Any]:
    """Run axe-core in the page; violations at the given impact levels."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[Any]) -> str:
    return json.dumps(
        [{"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:3]}
         for v in violations],
        indent=1,
    )  # fmt: skip


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def dark_mode_problems(page: Page, label: str) -> list[str]:
    """Switch the page to dark mode and return axe's serious findings there."""
    page.click("#theme-toggle")
    page.wait_for_timeout(300)
    dark = axe_violations(page)
    return [f"dark mode ({label}): {describe(dark)}"] if dark else []


def page_problems(
    page: Page,
    path: str,
    *,
    lang: str,
    desktop: bool,
    weight: int,
    budget: int,
    messages: Any,
    phone_width: int,
) -> list[str]:
    """What every page must pass, on the page as it stands: at desktop width its JS/CSS
    ``weight`` within ``budget``, no serious axe violation and (in Korean) no
    untranslated text; at phone width no horizontal scroll."""
    from tests.webcheck import untranslated

    problems = []
    if desktop:
        if weight > budget:
            problems.append(f"{path}: {weight} bytes of JS/CSS (budget {budget})")
        bad = axe_violations(page)
        if bad:
            problems.append(f"{path} ({lang}) accessibility: {describe(bad)}")
        if lang == "ko":
            missing = untranslated(page.content(), messages)
            if missing:
                problems.append(f"{path}: untranslated {missing[:5]}")
    else:
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > phone_width + 1:
            problems.append(f"{path}: {width}px wide at phone width")
    return problems
