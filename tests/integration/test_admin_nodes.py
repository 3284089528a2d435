"""The admin console's node changes on the live dev cluster, as the administrator.

carol (portal admin, Slurm ``AdminLevel=Administrator``) drains node003 with a reason,
Slurm shows it drained with that reason and carol as the user, and the revert resumes
it; what the executor ran equals the plan shown. Slurm decides, not the portal's role:
alice made a portal admin (a portal whose admin group is hers) is refused by Slurm,
and so is carol with her ``AdminLevel`` removed; each is a 403 with Slurm's reason.

node003 only, drained for seconds; every test puts it back to idle (resume as root)
and restores carol's AdminLevel, because other tests share this cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

NODE = "node003"
REASON = "portal test: bad DIMM"


def slurm(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def node_line() -> dict[str, str]:
    """``scontrol show node NODE`` as key=value pairs (Reason keeps its spaces)."""
    text = slurm("scontrol", "show", "node", NODE)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Reason="):
            fields["Reason"] = line.removeprefix("Reason=")
            continue
        for part in line.split():
            key, _, value = part.partition("=")
            fields[key] = value
    return fields


def restore_node() -> None:
    """Back to idle if anything left it drained or down (never fails the teardown)."""
    state = node_line().get("State", "")
    if any(word in state for word in ("DRAIN", "DOWN", "REBOOT")):
        subprocess.run(
            ["scontrol", "update", f"NodeName={NODE}", "State=RESUME"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def wait_until_idle(seconds: float = 90.0) -> None:
    """Resume NODE and wait until slurmctld calls it plain idle and responding.

    A node can be DOWN for reasons of its own when a test starts (a slurmd that missed
    its pings while the machine was loaded, or a restarted slurmctld waiting for it to
    register); the tests plan from its current state, so they start from idle."""
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        restore_node()
        state = node_line().get("State", "")
        if state == "IDLE":
            return
        time.sleep(1)
    pytest.fail(f"{NODE} is not idle before the test: State={state}")


@pytest.fixture
def node(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster, for slurm()
    wait_until_idle()
    try:
        yield NODE
    finally:
        restore_node()


def wait_for_state(portal: RunningPortal, headers: dict[str, str], want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    row: dict[str, Any] = {}
    with portal.client(headers=headers) as c:
        while time.monotonic() < deadline:
            nodes = c.get("/api/v1/admin/nodes").json()["nodes"]
            row = next(n for n in nodes if n["name"] == NODE)
            if row["status"] == want:
                return row
            time.sleep(0.5)
    raise AssertionError(f"{NODE} did not become {want}: {row}")


def test_carol_drains_and_reverts_and_the_plan_is_what_ran(
    portal: RunningPortal, carol: dict[str, str], node: str
) -> None:
    change = {"action": "drain", "nodes": node, "reason": REASON}
    with portal.client(headers=carol) as c:
        r = c.post("/api/v1/admin/nodes/plan", json=change)
        assert r.status_code == 200, r.text
        plan = r.json()
        shown = [cmd["argv"] for cmd in plan["commands"]]
        assert shown == [
            ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={REASON}"]
        ]
        assert plan["revertible"] and plan["previous"][node]["status"] == "idle"

        ran = portal.services.executor.ran
        before = len(ran)
        body = {"change": change, "reason": "ticket 42", "expect": shown}
        r = c.post("/api/v1/admin/nodes/apply", json=body)
        assert r.status_code == 200, r.text
        applied = r.json()
        # The executor's own record: exactly the plan's argv, run as carol.
        admin_runs = [x for x in list(ran)[before:] if x.as_user is not None]
        assert [list(x.argv) for x in admin_runs] == shown == applied["ran"]
        assert {x.as_user for x in admin_runs} == {"carol"}

        line = node_line()
        assert "DRAIN" in line["State"]
        assert line["Reason"].startswith(f"{REASON} [carol@"), line
        sinfo = slurm("sinfo", "-h", "-n", node, "-o", "%T|%E|%u")
        state, reason, user = sinfo.strip().split("|")
        assert state in ("drained", "draining") and (reason, user) == (REASON, "carol")
        row = wait_for_state(portal, carol, "drained")
        assert (row["reason"], row["reason_set_by"]) == (REASON, "carol")

        # Argv other than those planned now (a stale page) are refused, not run.
        stale = {**body, "expect": [["scontrol", "update", f"NodeName={node}", "State=DOWN"]]}
        assert c.post("/api/v1/admin/nodes/apply", json=stale).status_code == 409

        revert = c.get(f"/api/v1/admin/changes/{applied['change_id']}/revert").json()
        undo = [cmd["argv"] for cmd in revert["commands"]]
        assert undo == [["scontrol", "update", f"NodeName={node}", "State=RESUME"]]
        before = len(ran)
        r = c.post(
            f"/api/v1/admin/changes/{applied['change_id']}/revert",
            json={"reason": "ticket 42 fixed", "expect": undo},
        )
        assert r.status_code == 200, r.text
        assert [list(x.argv) for x in list(ran)[before:] if x.as_user == "carol"] == undo
        state = node_line()["State"]  # IDLE, or IDLE+NOT_RESPONDING until the next ping
        assert state.split("+")[0] == "IDLE" and "DRAIN" not in state, state
        again = c.post(
            f"/api/v1/admin/changes/{applied['change_id']}/revert", json={"reason": "twice"}
        )
        assert again.status_code == 409

        audit = c.get("/api/v1/audit", params={"action": "admin.node.drain"}).json()["items"]
        assert any(
            e["username"] == "carol" and "ticket 42" in (e["detail"] or "") for e in audit[:3]
        )


def drain_argv(node: str) -> list[str]:
    return ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={REASON}"]


def test_apply_without_the_plans_argv_is_refused_before_anything_runs(
    portal: RunningPortal, carol: dict[str, str], node: str
) -> None:
    body = {"change": {"action": "drain", "nodes": node, "reason": REASON}, "reason": "x"}
    ran = portal.services.executor.ran
    before = len(ran)
    with portal.client(headers=carol) as c:
        r = c.post("/api/v1/admin/nodes/apply", json=body)
    assert r.status_code == 422, r.text
    assert "expect" in r.text
    assert [x for x in list(ran)[before:] if x.as_user is not None] == []
    assert "DRAIN" not in node_line()["State"]


def test_the_portal_role_is_needed_to_see_and_change_nodes(
    portal: RunningPortal, alice: dict[str, str], node: str
) -> None:
    with portal.client(headers=alice) as c:
        assert c.get("/api/v1/admin/nodes").status_code == 403
        body = {"change": {"action": "drain", "nodes": node, "reason": "x"}, "reason": "x"}
        r = c.post("/api/v1/admin/nodes/apply", json=body)
        assert r.status_code == 403 and "administrator role" in r.json()["detail"]
    assert "DRAIN" not in node_line()["State"]


@pytest.fixture(scope="module")
def research_admins(make_portal: PortalFactory) -> RunningPortal:
    """A portal whose admin group is alice's own: the portal lets her in, Slurm won't."""
    return make_portal(admin_group="research")


def test_slurm_refuses_a_portal_admin_without_slurm_rights(
    research_admins: RunningPortal, node: str
) -> None:
    alice = research_admins.login("alice")
    body = {
        "change": {"action": "drain", "nodes": node, "reason": REASON},
        "reason": "try",
        "expect": [drain_argv(node)],
    }
    with research_admins.client(headers=alice) as c:
        assert c.get("/api/v1/admin/nodes").status_code == 200
        r = c.post("/api/v1/admin/nodes/apply", json=body)
        audit = c.get("/api/v1/audit", params={"action": "admin.node.drain"}).json()["items"]
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "slurm_permission_denied"
    assert "Invalid user id" in r.json()["detail"]
    assert "DRAIN" not in node_line()["State"]
    # The refusal is audited with who, why and the command Slurm refused.
    assert (audit[0]["username"], audit[0]["result"]) == ("alice", "refused")
    assert "try" in audit[0]["detail"] and "State=DRAIN" in audit[0]["detail"]


def test_carol_without_her_admin_level_is_refused_by_slurm(
    portal: RunningPortal, carol: dict[str, str], node: str
) -> None:
    body = {
        "change": {"action": "drain", "nodes": node, "reason": REASON},
        "reason": "try",
        "expect": [drain_argv(node)],
    }
    slurm("sacctmgr", "-i", "modify", "user", "carol", "set", "AdminLevel=None")
    try:
        deadline = time.monotonic() + 30
        with portal.client(headers=carol) as c:
            while True:  # slurmctld learns of the change from slurmdbd
                r = c.post("/api/v1/admin/nodes/apply", json=body)
                if r.status_code != 200 or time.monotonic() > deadline:
                    break
                restore_node()
                time.sleep(1)
        assert r.status_code == 403, r.text
        assert "Slurm refused" in r.json()["detail"]
        assert "DRAIN" not in node_line()["State"]
    finally:
        slurm("sacctmgr", "-i", "modify", "user", "carol", "set", "AdminLevel=Administrator")
    level = slurm("sacctmgr", "-n", "-P", "show", "user", "carol", "format=adminlevel")
    assert level.strip() == "Administrator"


def test_the_cli_plans_applies_and_reverts_as_carol(
    portal: RunningPortal, carol: dict[str, str], node: str
) -> None:
    with portal.client(headers=carol) as c:
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()

    dry = runner.invoke(cli, ["admin", "nodes", "drain", node, "-r", REASON, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    shown = f"$ scontrol update NodeName={node} State=DRAIN 'Reason={REASON}'"
    assert shown in dry.output and "DRAIN" not in node_line()["State"]

    done = runner.invoke(cli, ["admin", "nodes", "drain", node, "-r", REASON, "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert node_line()["Reason"].startswith(f"{REASON} [carol@")
    change_id = done.output.rsplit("Applied as change ", 1)[1].split(".")[0]

    listed = runner.invoke(cli, ["admin", "changes", "--kind", "node."], env=env)
    assert listed.exit_code == 0 and f"{change_id}" in listed.output
    undone = runner.invoke(cli, ["admin", "revert", change_id, "--why", "test", "--yes"], env=env)
    assert undone.exit_code == 0, undone.output
    assert "DRAIN" not in node_line()["State"]
    again = runner.invoke(cli, ["admin", "revert", change_id, "--why", "test", "--yes"], env=env)
    assert again.exit_code == 1 and "already reverted" in again.output


def page_client(portal: RunningPortal, user: str, lang: str = "en") -> httpx.Client:
    """A client logged in through the login form, as a browser is."""
    client = portal.client(follow_redirects=False)
    client.cookies.set("hpcportal_lang", lang)
    r = client.post("/login", data={"username": user, "password": f"{user}-demo", "next": "/"})
    assert r.status_code == 303, r.text
    return client


def test_the_nodes_page_plans_applies_and_reverts(portal: RunningPortal, node: str) -> None:
    carol, alice = page_client(portal, "carol"), page_client(portal, "alice")
    try:
        home = alice.get("/admin/nodes")
        assert home.status_code == 403 and 'data-testid="nav-admin"' not in home.text

        page = carol.get("/admin/nodes")
        assert page.status_code == 200 and 'data-testid="nav-admin"' in page.text
        assert f'data-node="{node}"' in page.text
        query = {"nodes": node, "action": "drain", "reason": REASON}
        planned = carol.get("/admin/nodes", params=query)
        assert planned.status_code == 200
        shown = f"$ scontrol update NodeName={node} State=DRAIN &#39;Reason={REASON}&#39;"
        assert shown in planned.text and "DRAIN" not in node_line()["State"]

        argv = [["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={REASON}"]]
        form = {**query, "next_state": "resume", "why": "page test", "expect": json.dumps(argv)}
        forged = carol.post("/admin/nodes/apply", data={**form, "csrf": "forged"})
        assert forged.status_code == 403 and "DRAIN" not in node_line()["State"]
        csrf = carol.cookies.get("hpcportal_csrf")
        stale = {**form, "csrf": csrf, "expect": json.dumps([argv[0][:4]])}
        r = carol.post("/admin/nodes/apply", data=stale)
        assert r.status_code == 409, r.text[-2000:]
        done = carol.post("/admin/nodes/apply", data={**form, "csrf": csrf})
        assert done.status_code == 303, done.text
        change_id = done.headers["location"].rsplit("=", 1)[1]
        assert node_line()["Reason"].startswith(f"{REASON} [carol@")

        listed = carol.get(done.headers["location"])
        assert f'data-testid="revert-{change_id}"' in listed.text
        changes = listed.text[listed.text.index('data-testid="admin-changes"') :]
        assert f"scontrol update NodeName={node} State=RESUME" in changes, changes[:800]
        undo = [["scontrol", "update", f"NodeName={node}", "State=RESUME"]]
        reverted = carol.post(
            f"/admin/changes/{change_id}/revert",
            data={"csrf": csrf, "why": "page test done", "expect": json.dumps(undo)},
        )
        assert reverted.status_code == 303, reverted.text
        assert "DRAIN" not in node_line()["State"]

    finally:
        carol.close()
        alice.close()
    korean = page_client(portal, "carol", "ko")
    try:
        text = korean.get("/admin/nodes").text
        assert "관리: 노드" in text and "계획 보기" in text and "Show the plan" not in text
    finally:
        korean.close()
