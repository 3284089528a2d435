"""``/api/v1/templates`` through the real app over HTTP, as the demo users."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal

BASE = "/api/v1/templates"
SEED_SLUGS = {"python-script", "pytorch-gpu", "job-array", "mpi-hello", "apptainer-run"}


def call(
    portal: RunningPortal, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    with portal.client() as c:
        return c.request(method, f"{BASE}{path}", headers=headers, **kwargs)


def template(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Greeting",
        "description": "Says hello.",
        "category": "demo",
        "script": "#!/bin/bash\n#SBATCH --output=/dev/null\necho hello {{ who }}\n",
        "options": {"time_limit": "1"},
        "parameters": [
            {"name": "who", "type": "string", "default": "world", "max_length": 40},
            {
                "name": "cpus",
                "type": "integer",
                "default": 1,
                "min": 1,
                "max": 2,
                "option": "cpus_per_task",
            },
        ],
    }
    body.update(overrides)
    return body


def seeded(portal: RunningPortal, headers: dict[str, str], slug: str) -> dict[str, Any]:
    items = call(portal, "GET", "", headers).json()["items"]
    return next(t for t in items if t["slug"] == slug)


# --- Seeds and listing ----------------------------------------------------------------


def test_site_templates_are_seeded_at_start(portal: RunningPortal, bob: dict[str, str]) -> None:
    r = call(portal, "GET", "", bob, params={"scope": "site"})
    assert r.status_code == 200, r.text
    assert {t["slug"] for t in r.json()["items"]} - {None} == SEED_SLUGS
    categories = call(portal, "GET", "/categories", bob).json()
    assert {"python", "gpu", "array", "mpi", "containers"} <= set(categories)
    gpu = call(portal, "GET", "", bob, params={"category": "gpu"}).json()["items"]
    assert [t["slug"] for t in gpu] == ["pytorch-gpu"]


def test_unknown_query_parameters_are_refused(portal: RunningPortal, bob: dict[str, str]) -> None:
    r = call(portal, "GET", "", bob, params={"categroy": "gpu"})
    assert r.status_code == 422 and "categroy" in r.json()["detail"]


def test_a_login_is_needed(portal: RunningPortal) -> None:
    assert call(portal, "GET", "", {}).status_code == 401


@pytest.mark.parametrize("template_id", ["0", "2147483648", "abc"])
def test_bad_ids_are_422(portal: RunningPortal, bob: dict[str, str], template_id: str) -> None:
    assert call(portal, "GET", f"/{template_id}", bob).status_code == 422


# --- Personal templates ---------------------------------------------------------------


def test_personal_template_lifecycle(
    portal: RunningPortal, alice: dict[str, str], bob: dict[str, str], carol: dict[str, str]
) -> None:
    r = call(portal, "POST", "", alice, json=template())
    assert r.status_code == 201, r.text
    created = r.json()
    path = f"/{created['id']}"
    assert (created["scope"], created["owner"], created["version"]) == ("personal", "alice", 1)

    listed = call(portal, "GET", "", alice, params={"scope": "personal"}).json()["items"]
    assert created["id"] in [t["id"] for t in listed]
    for other in (bob, carol):  # not even admins see someone's personal template
        assert call(portal, "GET", path, other).status_code == 404
        assert call(portal, "PUT", path, other, json=template()).status_code == 404
        assert call(portal, "DELETE", path, other).status_code == 404
        ids = [t["id"] for t in call(portal, "GET", "", other).json()["items"]]
        assert created["id"] not in ids

    r = call(portal, "PUT", path, alice, json=template(name="Greeting v2", script="echo hi\n"))
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["name"]) == (2, "Greeting v2")
    history = call(portal, "GET", f"{path}/history", alice).json()
    assert [(v["version"], v["current"]) for v in history] == [(2, True), (1, False)]
    assert "echo hello {{ who }}" in history[1]["script"]
    assert history[1]["edited_by"] == "alice"

    assert call(portal, "DELETE", path, alice).status_code == 204
    assert call(portal, "GET", path, alice).status_code == 404


def test_users_cannot_create_or_change_site_templates(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    r = call(portal, "POST", "", alice, json=template(scope="site"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    site = seeded(portal, alice, "mpi-hello")
    r = call(portal, "PUT", f"/{site['id']}", alice, json=template(scope="site"))
    assert r.status_code == 403
    assert call(portal, "DELETE", f"/{site['id']}", alice).status_code == 403


def test_admins_manage_site_templates(
    portal: RunningPortal, alice: dict[str, str], carol: dict[str, str]
) -> None:
    r = call(portal, "POST", "", carol, json=template(scope="site", name="Site greeting"))
    assert r.status_code == 201, r.text
    path = f"/{r.json()['id']}"
    assert r.json()["owner"] is None
    assert call(portal, "GET", path, alice).json()["name"] == "Site greeting"
    r = call(portal, "PUT", path, carol, json=template(scope="site", category="other"))
    assert r.status_code == 200 and r.json()["updated_by"] == "carol"
    assert len(call(portal, "GET", f"{path}/history", alice).json()) == 2
    assert call(portal, "DELETE", path, carol).status_code == 204
    assert call(portal, "GET", path, alice).status_code == 404


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"script": "{% if %}\n"}, "syntax error on line 1"),
        ({"script": "{{ ''.__class__.__mro__ }}\n"}, "not allowed"),
        ({"script": 'echo "{{ who }}"\n'}, "double quotes"),
        ({"script": "#SBATCH -J {{ who }}\necho\n"}, "#SBATCH"),
        ({"options": {"gpus": "many"}}, "gpus"),
        ({"parameters": [{"name": "x", "type": "integer", "min": 3, "max": 1}]}, "min"),
        ({"scope": "global"}, "scope"),
    ],
)
def test_broken_templates_are_422(
    portal: RunningPortal, alice: dict[str, str], change: dict[str, Any], needle: str
) -> None:
    r = call(portal, "POST", "", alice, json=template(**change))
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


# --- Rendering ------------------------------------------------------------------------


def test_render_gives_the_job_request(portal: RunningPortal, alice: dict[str, str]) -> None:
    python = seeded(portal, alice, "python-script")
    body = {"parameters": {"script_file": "$(rm -rf ~).py", "cpus": 2}, "options": {"qos": "high"}}
    r = call(portal, "POST", f"/{python['id']}/render", alice, json=body)
    assert r.status_code == 200, r.text
    job = r.json()
    assert "python3 '$(rm -rf ~).py'" in job["script"]
    assert (job["cpus_per_task"], job["qos"], job["memory"]) == (2, "high", "2G")


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        ({"script_file": "x\n#SBATCH --uid=0"}, "Parameter 'script_file'"),
        ({"cpus": 0}, "Parameter 'cpus': at least 1"),
        ({"cpus": "lots"}, "Parameter 'cpus'"),
        ({"gpus": 1}, "Unknown parameter 'gpus'"),
    ],
)
def test_bad_values_are_422(
    portal: RunningPortal, alice: dict[str, str], parameters: dict[str, Any], needle: str
) -> None:
    python = seeded(portal, alice, "python-script")
    r = call(portal, "POST", f"/{python['id']}/render", alice, json={"parameters": parameters})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


# --- Submission (needs services.submit and the run-as boundary) -----------------------


def test_submit_dry_run_previews_without_counting(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    r = call(portal, "POST", "", alice, json=template(name="Dry run"))
    template_id = r.json()["id"]
    r = call(
        portal,
        "POST",
        f"/{template_id}/submit",
        alice,
        params={"dry_run": "true"},
        json={"parameters": {"who": "you; id"}},
    )
    assert r.status_code == 200, r.text
    assert "echo hello 'you; id'" in r.json()["script"]
    assert "verdict" in r.json()
    assert call(portal, "GET", f"/{template_id}", alice).json()["use_count"] == 0


def test_submit_counts_real_submissions_once(
    portal: RunningPortal, alice: dict[str, str], devcluster: dict[str, Any]
) -> None:
    r = call(portal, "POST", "", alice, json=template(name="Real run"))
    template_id = r.json()["id"]
    headers = {**alice, "Idempotency-Key": f"templates-test-{template_id}"}
    body = {"parameters": {"who": "there"}, "options": {"partition": "normal"}}
    first = call(portal, "POST", f"/{template_id}/submit", headers, json=body)
    assert first.status_code == 201, first.text
    job_id = first.json()["job_id"]
    try:
        again = call(portal, "POST", f"/{template_id}/submit", headers, json=body)
        assert again.status_code == 200, again.text
        assert again.json()["replayed"] is True and again.json()["job_id"] == job_id
        assert call(portal, "GET", f"/{template_id}", alice).json()["use_count"] == 1
    finally:
        slurm_cli.scancel(devcluster["slurm_conf"], job_id)
