"""Reservations through the admin console on the live dev cluster, as the administrator.

The must-hold: carol plans a maintenance reservation over node[001-002] while a job of
alice's runs on node001; the plan names that job as a running conflict (and why)
before anything runs; applying runs exactly the planned command as carol, and
``scontrol show reservation`` (as root, read here on its own) has it with MAINT over
node[001-002]; the revert deletes it. An update and a delete are reverted to the values
``scontrol`` printed before. alice is refused by the portal's role (403), and when the
portal lets her in (a portal whose admin group is hers) by slurmctld itself: 403 with
Slurm's reason.

The cluster is shared: every reservation is named ``t_resv_<random>`` and deleted as
root when its test ends (whatever happened); the maintenance one lives for seconds
(while it exists, slurmctld starts no job without a time limit on node001-002), the
others are a year ahead. The job on node001 is cancelled at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory


def scontrol(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["scontrol", *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip


def shown(name: str) -> dict[str, str] | None:
    """``scontrol -o show reservation NAME`` as Key=value pairs, or None."""
    done = scontrol("-o", "show", "reservation", name)
    if done.returncode != 0 or not done.stdout.startswith("ReservationName="):
        assert "not found" in (done.stdout + done.stderr), done
        return None
    return dict(p.partition("=")[::2] for p in done.stdout.split() if "=" in p)


@pytest.fixture
def resv(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster, for scontrol
    name = f"t_resv_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        scontrol("delete", f"ReservationName={name}")
    assert shown(name) is None


@pytest.fixture
def job_on_node001(devcluster: dict[str, Any]) -> Iterator[int]:
    """A job of alice's running on node001 for up to two hours (cancelled at the end)."""
    conf = devcluster["slurm_conf"]
    job = slurm_cli.sbatch(
        conf, "alice", "-w", "node001", "-t", "120", "-J", "t-resv-blocker", "--wrap", "sleep 600"
    )
    try:
        slurm_cli.wait_running(conf, job)
        yield job
    finally:
        slurm_cli.scancel(conf, job, missing_ok=True)


def later(**delta: float) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(**delta)
    return moment.isoformat()


def plan_of(portal: RunningPortal, headers: dict[str, str], change: dict[str, Any]) -> Any:
    with portal.client(headers=headers) as c:
        r = c.post("/api/v1/admin/reservations/plan", json=change)
    assert r.status_code == 200, r.text
    return r.json()


def apply(
    portal: RunningPortal, headers: dict[str, str], change: dict[str, Any], why: str
) -> dict[str, Any]:
    """Plan, then apply what the plan showed; check the executor ran exactly that."""
    shown_argv = [cmd["argv"] for cmd in plan_of(portal, headers, change)["commands"]]
    ran = portal.services.executor.ran
    before = len(ran)
    with portal.client(headers=headers) as c:
        body = {"change": change, "reason": why, "expect": shown_argv}
        r = c.post("/api/v1/admin/reservations/apply", json=body)
    assert r.status_code == 200, r.text
    admin_runs = [list(x.argv) for x in list(ran)[before:] if x.as_user is not None]
    assert admin_runs == shown_argv == r.json()["ran"]
    assert {x.as_user for x in list(ran)[before:] if x.as_user is not None} == {"carol"}
    return dict(r.json())


def revert(portal: RunningPortal, headers: dict[str, str], change_id: int) -> dict[str, Any]:
    with portal.client(headers=headers) as c:
        plan = c.get(f"/api/v1/admin/changes/{change_id}/revert")
        assert plan.status_code == 200, plan.text
        undo = [cmd["argv"] for cmd in plan.json()["commands"]]
        r = c.post(
            f"/api/v1/admin/changes/{change_id}/revert",
            json={"reason": "undo for the test", "expect": undo},
        )
    assert r.status_code == 200, r.text
    assert r.json()["ran"] == undo
    return dict(r.json())


def test_a_maintenance_reservation_shows_its_conflicts_then_exists(
    portal: RunningPortal, carol: dict[str, str], resv: str, job_on_node001: int
) -> None:
    change = {
        "action": "create",
        "name": resv,
        "values": {
            "start": later(hours=1),
            "duration_minutes": 60,
            "nodes": "node[001-002]",
            "users": ["carol"],
            "flags": ["MAINT", "IGNORE_JOBS"],
        },
    }
    ran = portal.services.executor.ran
    before = len(ran)
    deadline = time.monotonic() + 30
    while True:  # the portal's snapshot learns that the job runs within a refresh
        plan = plan_of(portal, carol, change)
        hit = {j["job_id"]: j for j in plan["affects"]}
        seen = hit.get(str(job_on_node001), {}).get("state")
        if seen == "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    conflict = hit[str(job_on_node001)]
    assert conflict["state"] == "RUNNING" and conflict["user"] == "alice"
    assert conflict["conflict"].startswith("running on node001 until ")
    assert plan["commands"][0]["argv"][:4] == [
        "scontrol", "create", "reservation", f"ReservationName={resv}"
    ]  # fmt: skip
    assert "Flags=IGNORE_JOBS,MAINT" in plan["commands"][0]["argv"]
    assert plan["revert"][0]["argv"] == ["scontrol", "delete", f"ReservationName={resv}"]
    assert any("MAINT" in n for n in plan["notes"])
    assert not [x for x in list(ran)[before:] if x.as_user is not None]  # planning ran nothing
    assert shown(resv) is None

    applied = apply(portal, carol, change, "firmware update of node001-002")
    row = shown(resv)
    assert row is not None
    assert row["Nodes"] == "node[001-002]" and row["Users"] == "carol"
    assert {"MAINT", "IGNORE_JOBS"} <= set(row["Flags"].split(","))
    with portal.client(headers=carol) as c:
        listed = c.get("/api/v1/admin/reservations").json()
    mine = next(r for r in listed["reservations"] if r["reservation"]["name"] == resv)
    assert mine["maintenance"] and mine["jobs"] >= 1
    node001 = next(r for r in listed["rows"] if r["node"] == "node001")
    assert any(resv in cell["names"] and cell["maintenance"] for cell in node001["cells"])

    revert(portal, carol, applied["change_id"])
    assert shown(resv) is None


def test_update_and_delete_are_reverted_to_what_slurm_had(
    portal: RunningPortal, carol: dict[str, str], resv: str
) -> None:
    start = later(days=365)
    create = {
        "action": "create",
        "name": resv,
        "values": {"start": start, "duration_minutes": 120, "nodes": "node003",
                   "users": "carol", "flags": "MAINT"},
    }  # fmt: skip
    created = apply(portal, carol, create, "planned maintenance")
    original = shown(resv)
    assert original is not None and original["Duration"] == "02:00:00"

    update = {
        "action": "update",
        "name": resv,
        "values": {"duration_minutes": 180, "users": ["carol", "dave"], "flags": []},
    }
    plan = plan_of(portal, carol, update)
    assert any(n.startswith("users: carol -> carol,dave") for n in plan["notes"]), plan
    updated = apply(portal, carol, update, "longer window")
    row = shown(resv)
    assert row is not None and row["Users"] == "carol,dave" and row["Duration"] == "03:00:00"
    assert "MAINT" not in row["Flags"].split(",")
    revert(portal, carol, updated["change_id"])
    assert shown(resv) == original

    deleted = apply(portal, carol, {"action": "delete", "name": resv}, "cancelled")
    assert shown(resv) is None
    revert(portal, carol, deleted["change_id"])
    assert shown(resv) == original  # re-created with the values read before the delete

    revert(portal, carol, created["change_id"])
    assert shown(resv) is None
    with portal.client(headers=carol) as c:
        again = c.post("/api/v1/admin/reservations/plan", json=update)
        audit = c.get("/api/v1/audit", params={"action": "admin.reservation.update"}).json()
    assert again.status_code == 404
    assert any("longer window" in e["detail"] for e in audit["items"])


def test_bad_values_are_422_and_nothing_runs(
    portal: RunningPortal, carol: dict[str, str], resv: str
) -> None:
    base = {"start": later(days=365), "duration_minutes": 60, "users": ["carol"]}
    bad = [
        {"action": "create", "name": "-x", "values": {**base, "nodes": "node003"}},
        {"action": "create", "name": resv, "values": {**base, "nodes": "node003 Flags=X"}},
        {"action": "create", "name": resv, "values": {**base, "nodes": "node003",
                                                      "flags": ["SPEC_NODES"]}},
        {"action": "create", "name": resv, "values": {**base}},
        {"action": "create", "name": resv, "values": {**base, "nodes": "node003",
                                                      "users": ["carol;id"]}},
        {"action": "delete", "name": resv, "values": {"users": ["carol"]}},
    ]  # fmt: skip
    ran = portal.services.executor.ran
    before = len(ran)
    with portal.client(headers=carol) as c:
        for change in bad:
            r = c.post("/api/v1/admin/reservations/plan", json=change)
            assert r.status_code == 422, (change, r.text)
        unknown = {"action": "create", "name": resv, "values": {**base, "nodes": "nosuch007"}}
        assert c.post("/api/v1/admin/reservations/plan", json=unknown).status_code == 404
        body = {"change": {"action": "delete", "name": resv}, "reason": "x"}
        assert c.post("/api/v1/admin/reservations/apply", json=body).status_code == 422
    assert not [x for x in list(ran)[before:] if x.as_user is not None]
    assert shown(resv) is None


def test_the_portal_role_is_needed(portal: RunningPortal, alice: dict[str, str], resv: str) -> None:
    change = {"action": "delete", "name": resv}
    with portal.client(headers=alice) as c:
        assert c.get("/api/v1/admin/reservations").status_code == 403
        assert c.post("/api/v1/admin/reservations/plan", json=change).status_code == 403
        expect = [["scontrol", "delete", f"ReservationName={resv}"]]
        body = {"change": change, "reason": "x", "expect": expect}
        r = c.post("/api/v1/admin/reservations/apply", json=body)
    assert r.status_code == 403 and "administrator role" in r.json()["detail"]


@pytest.fixture(scope="module")
def research_admins(make_portal: PortalFactory) -> RunningPortal:
    """A portal whose admin group is alice's own: the portal lets her in, Slurm won't."""
    return make_portal(admin_group="research")


def test_slurm_refuses_a_portal_admin_without_slurm_rights(
    research_admins: RunningPortal, resv: str
) -> None:
    alice = research_admins.login("alice")
    change = {
        "action": "create",
        "name": resv,
        "values": {"start": later(days=365), "duration_minutes": 60, "nodes": "node003",
                   "users": ["alice"], "flags": ["MAINT"]},
    }  # fmt: skip
    with research_admins.client(headers=alice) as c:
        plan = c.post("/api/v1/admin/reservations/plan", json=change)
        assert plan.status_code == 200, plan.text  # the portal lets her plan
        expect = [cmd["argv"] for cmd in plan.json()["commands"]]
        body = {"change": change, "reason": "try", "expect": expect}
        r = c.post("/api/v1/admin/reservations/apply", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "slurm_permission_denied"
    assert "Invalid user id" in r.json()["detail"]
    assert shown(resv) is None


def test_the_cli_plans_applies_and_reverts_as_carol(
    portal: RunningPortal, carol: dict[str, str], resv: str
) -> None:
    with portal.client(headers=carol) as c:
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli-resv", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()
    start = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:00")
    create = ["admin", "reservation", "create", resv, "--why", "cli test", "--start", start]
    create += ["--duration", "30", "--nodes", "node004", "--accounts", "research"]

    dry = runner.invoke(cli, [*create, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    argv = f"$ scontrol create reservation ReservationName={resv} StartTime={start}"
    assert f"{argv} Duration=30 Nodes=node004 Accounts=research" in dry.output
    assert shown(resv) is None

    done = runner.invoke(cli, [*create, "--yes"], env=env)
    assert done.exit_code == 0, done.output
    row = shown(resv)
    assert row is not None and row["Accounts"] == "research" and row["Nodes"] == "node004"
    listed = runner.invoke(cli, ["admin", "reservation", "list"], env=env)
    assert listed.exit_code == 0 and resv in listed.output, listed.output
    change_id = done.output.rsplit("Applied as change ", 1)[1].split(".")[0]
    undone = runner.invoke(cli, ["admin", "revert", change_id, "--why", "cli", "--yes"], env=env)
    assert undone.exit_code == 0, undone.output
    assert shown(resv) is None
