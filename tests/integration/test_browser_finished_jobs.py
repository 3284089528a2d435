"""A finished job stays first-class after slurmctld forgets it (Chromium, English and Korean).

A job whose script says ``#SBATCH --output=python-%j.out`` runs to completion; the
module then waits until slurmctld has forgotten it (``MinJobAge``, read from the
cluster's configuration: about five minutes on the dev cluster, mostly spent while the
tests before it run, since the job is submitted when the session starts). From then
on only accounting knows the job, and its page must still show its state and times,
its output from ``python-<id>.out`` (not ``slurm-<id>.out``), its script, and
"Resubmit with changes" must pre-fill that script. The jobs list shows it under "Ended
in the last day"; the jump box and the ``/`` shortcut lead to it.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.integration import slurm_cli
from tests.integration.browser import login, page_problems, screenshot
from tests.integration.forgotten_job import ForgettableJob, submit_forgettable
from tests.integration.portal_server import RunningPortal
from tests.webcheck import english_messages, page_assets

DESKTOP: Any = {"width": 1280, "height": 900}


def min_job_age(conf: str) -> int:
    """``MinJobAge`` of the running slurmctld, in seconds."""
    for line in slurm_cli.run(conf, ["scontrol", "show", "config"]).splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "MinJobAge":
            return int(value.split()[0])
    raise AssertionError("scontrol show config names no MinJobAge")


def held_by_slurmctld(conf: str, job_id: int) -> bool:
    """Does slurmctld still list the job (finished ones too, until ``MinJobAge``)?"""
    proc = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", str(job_id), "-o", "%i"],
        env=slurm_cli.env_for(conf),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode == 0 and str(job_id) in proc.stdout


@pytest.fixture(scope="module")
def forgotten(conf: str, forgotten_job_head_start: list[ForgettableJob]) -> Iterator[int]:
    """alice's finished job that slurmctld has forgotten, submitted when the session
    started (``conftest.forgotten_job_head_start``); its files are removed after."""
    job = forgotten_job_head_start.pop() if forgotten_job_head_start else None
    job = job or submit_forgettable(conf)
    # slurmctld purges a finished job on a periodic pass once MinJobAge has passed.
    deadline = time.monotonic() + min_job_age(conf) + 240
    while held_by_slurmctld(conf, job.job_id):
        assert time.monotonic() < deadline, f"slurmctld still holds job {job.job_id}"
        time.sleep(5)
    try:
        yield job.job_id
    finally:
        job.remove_files()


def session(browser: Browser, portal: RunningPortal, lang: str) -> BrowserContext:
    context = browser.new_context(viewport=DESKTOP, locale="ko-KR" if lang == "ko" else "en-US")
    page = context.new_page()
    login(page, portal.url, "alice", "alice-demo")
    if lang == "ko":
        page.select_option("#lang-switch", "ko")
        page.wait_for_load_state("networkidle")
    page.close()
    return context


def check_job_page(page: Page, job_id: int, lang: str) -> None:
    detail = page.locator("[data-testid=job-detail]")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(detail).to_have_attribute("data-source", "accounting")
    expect(page.locator("[data-testid=from-accounting]")).to_be_visible()
    expect(page.locator("[data-testid=job-state]")).to_have_attribute("data-status", "completed")
    output_file = f"/home/alice/python-{job_id}.out"
    expect(page.locator("[data-testid=job-output-file]")).to_have_text(output_file)
    expect(page.locator("[data-testid=output]")).to_contain_text(f"answer: 42 from {job_id}")
    assert page.locator("[data-testid=output-error]").count() == 0
    ended = page.locator("[data-testid=job-ended]")
    assert ended.get_attribute("datetime"), "the end time is shown"
    assert (ended.text_content() or "").strip() not in ("", "—")
    # Nothing of a waiting job is left on a finished one, and every pattern is expanded.
    for testid in ("job-reason", "job-dependency", "job-priority"):
        expect(page.locator(f"[data-testid={testid}]")).to_be_hidden()
    expect(page.locator("[data-testid=job-progress]")).to_be_hidden()
    body = page.text_content("main") or ""
    assert "%j" not in body and f"slurm-{job_id}.out" not in body
    expect(page.locator("[data-testid=job-efficiency]")).to_have_attribute(
        "data-loaded", "true", timeout=30_000
    )


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_a_forgotten_job_keeps_its_output_script_and_resubmit(
    browser: Browser, portal: RunningPortal, forgotten: int, lang: str
) -> None:
    job_id = forgotten
    context = session(browser, portal, lang)
    page = context.new_page()
    try:
        page.goto(f"{portal.url}/jobs/{job_id}")
        check_job_page(page, job_id, lang)
        weight = sum(page_assets(page.content()).values())
        problems = page_problems(
            page,
            f"/jobs/{job_id}",
            lang=lang,
            desktop=True,
            weight=weight,
            budget=200 * 1024,
            messages=english_messages(),
            phone_width=390,
        )
        assert not problems, "\n".join(problems)
        screenshot(page, f"screenshots/job-finished-{lang}-desktop")

        page.click("[data-testid=show-script]")
        expect(page.locator("[data-testid=job-script]")).to_contain_text(
            "#SBATCH --output=python-%j.out"
        )
        expect(page.locator("[data-testid=job-environment]")).to_be_visible()

        page.click("[data-testid=action-resubmit]")
        page.wait_for_url(re.compile(rf"/submit\?from={job_id}$"))
        script = page.input_value("[data-testid=script]")
        assert "#SBATCH --output=python-%j.out" in script
        assert 'echo "answer: $((6 * 7)) from $SLURM_JOB_ID"' in script
    finally:
        context.close()


def test_the_jobs_list_shows_it_and_the_jump_box_finds_it(
    browser: Browser, portal: RunningPortal, forgotten: int
) -> None:
    job_id = forgotten
    context = session(browser, portal, "en")
    page = context.new_page()
    try:
        # By its name: other tests' jobs of alice's may fill the first pages.
        page.goto(f"{portal.url}/jobs?q=forgotten-py")
        expect(page.locator("[data-testid=jobs-recent]")).to_have_value("1")
        row = page.locator(f'tr[data-job-id="{job_id}"]')
        expect(row).to_be_visible()
        expect(row.locator("[data-testid=job-state]")).to_have_attribute("data-status", "completed")
        page.select_option("[data-testid=jobs-recent]", "0")
        expect(row).to_have_count(0)

        page.locator("h1").click()
        page.keyboard.press("/")
        expect(page.locator("[data-testid=jobs-search]")).to_be_focused()

        page.fill("[data-testid=job-jump-id]", str(job_id))
        page.press("[data-testid=job-jump-id]", "Enter")
        page.wait_for_url(f"{portal.url}/jobs/{job_id}")
        expect(page.locator("[data-testid=job-output-file]")).to_have_text(
            f"/home/alice/python-{job_id}.out"
        )
    finally:
        context.close()


def test_a_waiting_job_page_follows_it_to_the_end_without_reloading(
    browser: Browser, portal: RunningPortal, conf: str
) -> None:
    """Reason, dependency and expected start while it waits; a ticking elapsed bar
    while it runs; end time and efficiency once it ends — on a page never reloaded."""
    first = slurm_cli.sbatch(conf, "alice", "--hold", "-J", "first", "--wrap", "true")
    second = slurm_cli.sbatch(
        conf, "alice", "-J", "second", "-t", "5", f"--dependency=afterok:{first}",
        "--wrap", "sleep 4",
    )  # fmt: skip
    context = session(browser, portal, "en")
    page = context.new_page()
    try:
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        page.goto(f"{portal.url}/jobs/{second}")
        expect(page.locator("[data-testid=job-reason]")).to_have_text("Dependency")
        expect(page.locator("[data-testid=job-dependency]")).to_contain_text(f"afterok:{first}")
        expect(page.locator("[data-testid=expected-start]")).not_to_be_empty()
        expect(page.locator("[data-testid=job-progress]")).to_be_hidden()

        slurm_cli.run(conf, ["scontrol", "release", str(first)], user="alice")
        state = page.locator("[data-testid=job-state]").first
        expect(state).to_have_attribute("data-status", "running", timeout=60_000)
        progress = page.locator("[data-testid=job-progress]")
        expect(progress).to_be_visible()
        expect(progress).to_contain_text("of 0:05:00")
        for testid in ("job-reason", "job-dependency"):
            expect(page.locator(f"[data-testid={testid}]")).to_be_hidden()
        expect(page.locator("[data-testid=expected-start]")).to_have_text("")

        expect(state).to_have_attribute("data-status", "completed", timeout=60_000)
        expect(progress).to_be_hidden()
        ended = page.locator("[data-testid=job-ended]")
        expect(ended).not_to_have_text("—")
        assert ended.get_attribute("datetime")
        expect(page.locator("[data-testid=job-efficiency]")).to_have_attribute(
            "data-loaded", "true", timeout=30_000
        )
    finally:
        slurm_cli.scancel(conf, first, second, missing_ok=True)
        context.close()
