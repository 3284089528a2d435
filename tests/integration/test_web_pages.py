"""The browser UI on the live dev cluster: real PAM logins through the login form,
every page in English and Korean, escaping, admin-only controls, dashboards."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.webcheck import english_messages, untranslated

XSS = '"><img src=x onerror=alert(1)>'
ESCAPED = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
PASSWORDS = {"alice": "alice-demo", "carol": "carol-demo"}
XSS_FILE = XSS + ".txt"


@pytest.fixture(scope="module")
def xss_job(portal: RunningPortal, devcluster: dict[str, Any]) -> Iterator[int]:
    """A held job of alice's whose name is an HTML injection attempt."""
    conf = str(devcluster["slurm_conf"])
    job_id = slurm_cli.sbatch(conf, "alice", "--hold", "-J", XSS, "--wrap", "true")
    portal.wait_for_generation(portal.services.snapshot.health().generation)
    yield job_id
    slurm_cli.scancel(conf, job_id)


def browser(portal: RunningPortal, user: str, lang: str = "en") -> httpx.Client:
    """A client that logs in through the login form, as a browser does."""
    client = portal.client(follow_redirects=False)
    client.cookies.set("hpcportal_lang", lang)
    response = client.post(
        "/login", data={"username": user, "password": PASSWORDS[user], "next": "/jobs"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/jobs"
    assert client.cookies.get(portal.settings.cookie_name)
    assert client.cookies.get("hpcportal_csrf")
    return client


@pytest.fixture(scope="module")
def alice(portal: RunningPortal) -> Iterator[httpx.Client]:
    client = browser(portal, "alice")
    yield client
    client.close()


@pytest.fixture(scope="module")
def carol(portal: RunningPortal) -> Iterator[httpx.Client]:
    client = browser(portal, "carol")
    yield client
    client.close()


def test_a_wrong_password_shows_the_form_again(portal: RunningPortal) -> None:
    with portal.client(follow_redirects=False) as client:
        client.cookies.set("hpcportal_lang", "ko")
        response = client.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert "사용자 이름이나 비밀번호가 틀렸습니다." in response.text
    assert 'value="alice"' in response.text


def test_every_page_answers_in_english_and_korean(
    portal: RunningPortal, alice: httpx.Client, xss_job: int
) -> None:
    messages = english_messages()
    paths = [
        "/",
        "/nodes",
        "/nodes/node001",
        "/partitions",
        "/jobs",
        "/jobs?arrays=expanded&sort=-id",
        f"/jobs/{xss_job}",
        f"/jobs/{xss_job}?script=true",
        "/submit",
        f"/submit?from={xss_job}",
        "/templates",
        "/templates/new",
        "/templates/1",
        "/accounting",
    ]
    for lang in ("en", "ko"):
        alice.cookies.set("hpcportal_lang", lang)
        for path in paths:
            response = alice.get(path)
            assert response.status_code == 200, (lang, path, response.text[:300])
            assert f'<html lang="{lang}"' in response.text
            if lang == "ko":
                assert untranslated(response.text, messages) == [], path
    alice.cookies.set("hpcportal_lang", "en")
    english = alice.get("/jobs").text
    assert untranslated(english, messages), "the check must notice English text"


def test_a_job_name_with_html_renders_as_text(alice: httpx.Client, xss_job: int) -> None:
    for path in ("/", "/jobs", f"/jobs/{xss_job}", f"/jobs/{xss_job}?script=true"):
        html = alice.get(path).text
        assert "<img src=x" not in html, path
        assert ESCAPED in html, path
    listing = alice.get("/jobs?q=onerror").text
    assert f'<tr data-job-id="{xss_job}"' in listing


def test_admin_toggles_are_only_for_admins(alice: httpx.Client, carol: httpx.Client) -> None:
    for path, testid in (("/jobs", "scope-toggle"), ("/accounting", "accounting-scope")):
        assert f'data-testid="{testid}"' not in alice.get(path).text
        assert f'data-testid="{testid}"' in carol.get(path).text
    mine = alice.get("/jobs?scope=all&arrays=expanded").text
    assert set(re.findall(r'<tr data-job-id="[^"]+" data-user="([^"]+)"', mine)) <= {"alice"}


def test_the_dashboard_layout_saves_and_resets(alice: httpx.Client) -> None:
    csrf = {"X-CSRF-Token": alice.cookies.get("hpcportal_csrf") or ""}
    assert alice.post("/api/v1/dashboard/layouts/reset", headers=csrf).status_code == 200
    start = alice.get("/api/v1/dashboard/layouts").json()
    assert start["source"] == "preset"
    layout = [
        {"type": "node_heatmap", "x": 0, "y": 0, "w": 12, "h": 4},
        {"type": "quick_submit", "x": 0, "y": 4, "w": 6, "h": 4},
    ]
    saved = alice.put("/api/v1/dashboard/layouts", json={"widgets": layout}, headers=csrf)
    assert saved.status_code == 200, saved.text
    assert alice.get("/api/v1/dashboard/layouts").json()["widgets"] == layout
    home = alice.get("/").text
    assert re.findall(r'data-widget="(\w+)"', home) == ["node_heatmap", "quick_submit"]
    reset = alice.post("/api/v1/dashboard/layouts/reset", headers=csrf)
    assert reset.json()["source"] == "preset"
    assert 'data-widget="cluster_summary"' in alice.get("/").text


def test_logging_out_ends_the_session(portal: RunningPortal) -> None:
    client = browser(portal, "alice")
    try:
        done = client.post("/logout", data={"csrf": client.cookies.get("hpcportal_csrf")})
        assert done.status_code == 303
        assert done.headers["location"] == "/login?reason=logged_out"
        after = client.get("/jobs")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/login?next=%2Fjobs")
    finally:
        client.close()


@pytest.fixture(scope="module")
def xss_file() -> Iterator[str]:
    """A file in alice's home whose name is an HTML injection attempt, made by alice."""
    path = f"/home/alice/{XSS_FILE}"
    subprocess.run(
        ["runuser", "-u", "alice", "--", "sh", "-c", 'echo hi > "$1"', "sh", path], check=True
    )
    yield path
    if os.path.exists(path):
        os.unlink(path)


def test_the_file_manager_answers_in_english_and_korean(alice: httpx.Client, xss_file: str) -> None:
    messages = english_messages()
    for lang in ("en", "ko"):
        alice.cookies.set("hpcportal_lang", lang)
        for path in ("/files", "/files/home", "/files/home?sort=-mtime&hidden=1"):
            response = alice.get(path)
            assert response.status_code == 200, (lang, path, response.text[:300])
            assert f'<html lang="{lang}"' in response.text
            assert 'data-testid="file-list"' in response.text
            if lang == "ko":
                assert untranslated(response.text, messages) == [], path
    alice.cookies.set("hpcportal_lang", "en")


def test_a_file_name_with_html_renders_as_text(alice: httpx.Client, xss_file: str) -> None:
    html = alice.get("/files/home").text
    assert "<img src=x" not in html
    assert ESCAPED + ".txt" in html
    assert f'data-name="{ESCAPED}.txt"' in html
    # Opening the file by its URL selects it in its folder.
    opened = alice.get("/files/home/" + XSS_FILE.replace("%", "%25"))
    assert opened.status_code == 200
    assert f'data-selected="{ESCAPED}.txt"' in opened.text


def test_a_missing_file_area_is_an_error_page(alice: httpx.Client) -> None:
    response = alice.get("/files/nowhere")
    assert response.status_code == 404
    assert '<html lang="en"' in response.text
