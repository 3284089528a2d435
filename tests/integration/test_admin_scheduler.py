"""Scheduler health and the audit view on the live dev cluster (issue 16.5, 16.7).

A portal sampling sdiag every second: its samples come from the release's own sdiag
(text on 22.05, ``--json=vX`` from 23.11), run as the portal's own user (no run-as), and
agree with what ``sdiag`` prints; a held job of alice shows among the pending reasons of
its partition. The audit view shows carol's QoS change (a unique QoS, created and
reverted) with its reason and argv, and a portal admin's change Slurm refused. alice is
refused every page and endpoint. Slurm-facing: sdiag differs per release.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory


def run(*argv: str, user: str | None = None) -> str:
    if user is not None:
        env = f"SLURM_CONF={os.environ['SLURM_CONF']}"
        argv = ("runuser", "-u", user, "--", "env", env, f"PATH={os.environ['PATH']}", *argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd="/tmp")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory, devcluster: dict[str, Any]) -> RunningPortal:
    os.environ.setdefault("SLURM_CONF", devcluster["slurm_conf"])
    return make_portal(sdiag_sample_seconds=1.0)


def page_client(portal: RunningPortal, user: str, lang: str = "en") -> httpx.Client:
    client = portal.client(follow_redirects=False)
    client.cookies.set("hpcportal_lang", lang)
    r = client.post("/login", data={"username": user, "password": f"{user}-demo", "next": "/"})
    assert r.status_code == 303, r.text
    return client


def wait_for_samples(portal: RunningPortal, headers: dict[str, str], count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    with portal.client(headers=headers) as c:
        while True:
            history = c.get("/api/v1/admin/scheduler/history", params={"hours": 1})
            assert history.status_code == 200, history.text
            if len(history.json()) >= count or time.monotonic() > deadline:
                return list(history.json())
            time.sleep(0.5)


@pytest.fixture
def held_job(portal: RunningPortal) -> Iterator[str]:
    """alice's job, held (pending, JobHeldUser) in ``viz``: it never runs."""
    out = run("sbatch", "--parsable", "-H", "-p", "viz", "-J", "t16-held", "-o", "/dev/null",
              "--wrap", "true", user="alice")  # fmt: skip
    job_id = out.strip().split(";")[0]
    try:
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60, check=False)


def test_sdiag_is_sampled_as_the_portal_and_agrees_with_sdiag(
    portal: RunningPortal, carol: dict[str, str], devcluster: dict[str, Any]
) -> None:
    points = wait_for_samples(portal, carol, 2)
    assert len(points) >= 2
    ran = [x for x in portal.services.executor.ran if x.argv[0] == "sdiag"]
    assert ran and {x.as_user for x in ran} == {None}  # the portal's own user
    cluster = portal.services.adapter.cluster()
    if cluster.release is not None and (cluster.release.major, cluster.release.minor) >= (23, 11):
        assert ran[-1].argv == ("sdiag", f"--json={cluster.data_format}")
    else:
        assert ran[-1].argv == ("sdiag",)
    with portal.client(headers=carol) as c:
        health = c.get("/api/v1/admin/scheduler").json()
    stats = health["latest"]
    printed = run("sdiag")
    since = re.search(r"Data since .*\((\d+)\)", printed)
    assert since is not None
    # The counters' start is slurmctld's (midnight, start, reset): the same in both.
    sampled_since = stats["data_since"].replace("Z", "+00:00")
    assert int(datetime.fromisoformat(sampled_since).timestamp()) == int(since.group(1))
    threads = re.search(r"Server thread count:\s+(\d+)", printed)
    assert threads is not None and stats["server_thread_count"] >= 1
    users = {u["user"] for u in health["top_rpc_users"]}
    assert "root" in users  # the snapshot's own reads
    assert health["top_rpc_users"] == sorted(
        health["top_rpc_users"], key=lambda u: (-u["total_us"], -u["count"], u["user"])
    )
    assert health["sample_seconds"] == 1.0 and health["sampler_error"] is None


def test_pending_reasons_by_partition_show_a_held_job(
    portal: RunningPortal, carol: dict[str, str], held_job: str
) -> None:
    deadline = time.monotonic() + 30
    with portal.client(headers=carol) as c:
        while True:
            rows = c.get("/api/v1/admin/scheduler").json()["pending_by_partition"]
            viz = next((r for r in rows if r["partition"] == "viz"), None)
            reasons = {r["reason"]: r["jobs"] for r in viz["reasons"]} if viz else {}
            if reasons.get("JobHeldUser", 0) >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert reasons.get("JobHeldUser", 0) >= 1, rows
    assert viz is not None and viz["pending"] == sum(reasons.values())


def test_the_scheduler_page_shows_figures_charts_and_reasons(
    portal: RunningPortal, carol: dict[str, str], held_job: str
) -> None:
    wait_for_samples(portal, carol, 2)
    time.sleep(1.5)  # the held job in the snapshot
    client = page_client(portal, "carol")
    try:
        page = client.get("/admin/scheduler", params={"hours": 1})
        assert page.status_code == 200, page.text
        html = page.text
        assert 'data-testid="scheduler-latest"' in html
        assert 'data-figure="backfill_cycle_mean"' in html
        assert html.count('data-testid="scheduler-chart"') == 2 and "<polyline" in html
        assert 'data-user="root"' in html
        assert 'data-partition="viz"' in html and "JobHeldUser" in html
        assert 'href="/admin/audit"' in html and 'aria-current="page"' in html
        korean = page_client(portal, "carol", "ko").get("/admin/scheduler")
        assert korean.status_code == 200 and 'lang="ko"' in korean.text
    finally:
        client.close()


def test_alice_is_refused_every_scheduler_and_audit_view(
    portal: RunningPortal, alice: dict[str, str]
) -> None:
    with portal.client(headers=alice) as c:
        for path in ("/api/v1/admin/scheduler", "/api/v1/admin/scheduler/history",
                     "/api/v1/admin/audit"):  # fmt: skip
            r = c.get(path)
            assert r.status_code == 403 and "administrator role" in r.json()["detail"], path
    client = page_client(portal, "alice")
    try:
        for path in ("/admin/scheduler", "/admin/audit"):
            assert client.get(path).status_code == 403, path
    finally:
        client.close()


@pytest.fixture
def qos_name(devcluster: dict[str, Any]) -> Iterator[str]:
    name = f"t16_audit_{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        subprocess.run(["sacctmgr", "-i", "delete", "qos", "where", f"Name={name}"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip


def test_the_audit_view_shows_who_why_and_the_argv(
    portal: RunningPortal, carol: dict[str, str], qos_name: str, make_portal: PortalFactory
) -> None:
    create = {"action": "create", "name": qos_name, "values": {"priority": 3}}
    with portal.client(headers=carol) as c:
        plan = c.post("/api/v1/admin/qos/plan", json=create).json()
        shown = [cmd["argv"] for cmd in plan["commands"]]
        body = {"change": create, "reason": "audit page ticket 16", "expect": shown}
        applied = c.post("/api/v1/admin/qos/apply", json=body)
        assert applied.status_code == 200, applied.text
        change_id = applied.json()["change_id"]
        undo = c.get(f"/api/v1/admin/changes/{change_id}/revert").json()
        reverted = c.post(
            f"/api/v1/admin/changes/{change_id}/revert",
            json={"reason": "audit page cleanup", "expect": [x["argv"] for x in undo["commands"]]},
        )
        assert reverted.status_code == 200, reverted.text

        listed = c.get("/api/v1/admin/audit", params={"target": f"qos:{qos_name}"}).json()
        assert [i["action"] for i in listed["items"]] == ["admin.qos.create.revert",
                                                          "admin.qos.create"]  # fmt: skip
        created = listed["items"][1]
        assert created["username"] == "carol" and created["result"] == "ok"
        assert created["change"]["id"] == change_id
        assert created["change"]["reason"] == "audit page ticket 16"
        assert created["change"]["commands"] == shown
        assert created["change"]["reverted_by"] == reverted.json()["change_id"]
        # Filters narrow: outcome, who, kind, since, and a page of one.
        mine = {"target": f"qos:{qos_name}"}
        refused = c.get("/api/v1/admin/audit", params={**mine, "outcome": "refused"})
        assert refused.json()["total"] == 0
        assert c.get("/api/v1/admin/audit", params={**mine, "user": "alice"}).json()["total"] == 0
        future = c.get("/api/v1/admin/audit", params={"since": "2999-01-01T00:00:00Z"})
        assert future.json()["total"] == 0
        one = c.get("/api/v1/admin/audit", params={"kind": "admin.qos.", "limit": 1}).json()
        assert len(one["items"]) == 1 and one["total"] >= 2
        assert c.get("/api/v1/admin/audit", params={"outcome": "maybe"}).status_code == 422
        assert c.get("/api/v1/admin/audit", params={"who": "carol"}).status_code == 422

    client = page_client(portal, "carol")
    try:
        page = client.get("/admin/audit", params={"target": f"qos:{qos_name}"})
        assert page.status_code == 200, page.text
        assert "audit page ticket 16" in page.text
        assert f"sacctmgr -i add qos Name={qos_name}" in page.text
        assert 'data-outcome="ok"' in page.text
        bad = client.get("/admin/audit", params={"since": "yesterday"})
        assert bad.status_code == 422 and 'data-testid="admin-error"' in bad.text
    finally:
        client.close()

    created_token = None
    with portal.client(headers=carol) as c:
        created_token = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli16", "scopes": ["read"]}
        ).json()["token"]
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created_token}
    out = CliRunner().invoke(cli, ["admin", "audit", "--target", f"qos:{qos_name}"], env=env)
    assert out.exit_code == 0, out.output
    assert "audit page ticket 16" in out.output
    assert f"$ sacctmgr -i add qos Name={qos_name}" in out.output
    health = CliRunner().invoke(cli, ["admin", "scheduler", "--hours", "1"], env=env)
    assert health.exit_code == 0, health.output
    assert "Backfill cycle mean" in health.output and "Heaviest RPC users" in health.output


def test_a_change_slurm_refused_is_in_the_audit_view(make_portal: PortalFactory) -> None:
    """alice made a portal admin: Slurm refuses her drain, the view says refused and why."""
    research = make_portal(admin_group="research")
    alice = research.login("alice")
    node = "node003"
    change = {"action": "drain", "nodes": node, "reason": "t16 audit refused"}
    with research.client(headers=alice) as c:
        plan = c.post("/api/v1/admin/nodes/plan", json=change).json()
        body = {
            "change": change,
            "reason": "t16 try",
            "expect": [x["argv"] for x in plan["commands"]],
        }
        assert c.post("/api/v1/admin/nodes/apply", json=body).status_code == 403
        refused = c.get("/api/v1/admin/audit", params={"outcome": "refused"}).json()["items"]
    state = run("scontrol", "show", "node", node)
    assert "DRAIN" not in state.split("Reason=")[0]
    assert refused[0]["username"] == "alice" and refused[0]["change"] is None
    assert refused[0]["target"] == f"node:{node}" and "t16 try" in refused[0]["detail"]
    assert "Invalid user id" in refused[0]["detail"] or "refused" in refused[0]["detail"]
