"""QoS changes through the admin console on the live dev cluster, as the administrator.

carol (portal admin, Slurm ``AdminLevel=Administrator``) creates a QoS, changes it,
reverts the change, deletes it and reverts the delete; after each step ``sacctmgr
show qos`` (as root, read here with its own header, independently of the portal's
reader) prints what was asked, and a revert brings back every column exactly. What
the executor ran is the plan that was shown. alice is refused by the portal's role
(403), and when the portal lets her in (a portal whose admin group is hers) by
slurmdbd itself: 403 with Slurm's reason, as also when the typed action is called as
her directly.

Each test uses a QoS of its own (``t_a2_<random>``), deleted when it ends; the
cluster's QoS (``normal``, ``high``) are only named as preemption targets.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from hpcportal.errors import SlurmPermissionDenied
from hpcportal.runas import RunAs
from hpcportal.slurm import admin_qos
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_qos import QosSpec
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

CREATE_VALUES: dict[str, Any] = {
    "priority": 10,
    "preempt": ["normal"],
    "preempt_mode": "requeue",
    "flags": ["DenyOnLimit"],
    "grp_tres": "cpu=16",
    "max_tres_per_job": {"cpu": 2, "mem": "1536M"},
    "max_tres_per_user": "cpu=4,mem=8G",
    "max_wall_minutes": 90,
    "max_jobs_per_user": 3,
    "max_submit_jobs_per_user": 5,
}
#: What sacctmgr prints for CREATE_VALUES (its own units and clock).
CREATED_ROW = {
    "Priority": "10",
    "Preempt": "normal",
    "PreemptMode": "requeue",
    "Flags": "DenyOnLimit",
    "GrpTRES": "cpu=16",
    "MaxTRES": "cpu=2,mem=1.50G",
    "MaxTRESPU": "cpu=4,mem=8G",
    "MaxWall": "01:30:00",
    "MaxJobsPU": "3",
    "MaxSubmitPU": "5",
}
MODIFY_VALUES: dict[str, Any] = {
    "priority": 20,
    "flags": [],
    "max_tres_per_user": {"cpu": 8},
    "max_wall_minutes": None,
    "max_jobs_per_user": 10,
    "grp_jobs": 7,
}
MODIFIED_ROW = {
    **CREATED_ROW,
    "Priority": "20",
    "Flags": "",
    "MaxTRESPU": "cpu=8",
    "MaxWall": "",
    "MaxJobsPU": "10",
    "GrpJobs": "7",
}


def sacctmgr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sacctmgr", *args], capture_output=True, text=True, timeout=60, check=False
    )


def shown_row(name: str) -> dict[str, str] | None:
    """``sacctmgr show qos`` (its default columns) of ``name``, keyed by its header."""
    done = sacctmgr("--parsable2", "show", "qos", "where", f"name={name}")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    found = [dict(zip(header.split("|"), row.split("|"), strict=True)) for row in rows]
    return next((r for r in found if r["Name"] == name), None)


def has(row: dict[str, str] | None, expected: dict[str, str]) -> None:
    assert row is not None
    assert {k: row[k] for k in expected} == expected, row


@pytest.fixture
def qos(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ.setdefault("SLURM_CONF", devcluster["slurm_conf"])
    name = f"t_a2_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        sacctmgr("-i", "delete", "qos", "where", f"Name={name}")
    assert shown_row(name) is None


def apply(
    portal: RunningPortal, headers: dict[str, str], change: dict[str, Any], why: str
) -> dict[str, Any]:
    """Plan, then apply what the plan showed; check the executor ran exactly that."""
    with portal.client(headers=headers) as c:
        r = c.post("/api/v1/admin/qos/plan", json=change)
        assert r.status_code == 200, r.text
        shown = [cmd["argv"] for cmd in r.json()["commands"]]
        ran = portal.services.executor.ran
        before = len(ran)
        r = c.post(
            "/api/v1/admin/qos/apply", json={"change": change, "reason": why, "expect": shown}
        )
        assert r.status_code == 200, r.text
    admin_runs = [list(x.argv) for x in list(ran)[before:] if x.as_user is not None]
    assert admin_runs == shown == r.json()["ran"]
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


def test_carol_creates_changes_reverts_and_deletes_a_qos(
    portal: RunningPortal, carol: dict[str, str], qos: str
) -> None:
    create = {"action": "create", "name": qos, "values": CREATE_VALUES}
    with portal.client(headers=carol) as c:
        plan = c.post("/api/v1/admin/qos/plan", json=create).json()
    assert plan["commands"][0]["argv"][:4] == ["sacctmgr", "-i", "add", "qos"]
    assert plan["revert"] == [
        {"argv": ["sacctmgr", "-i", "delete", "qos", "where", f"Name={qos}"],
         "shown": f"sacctmgr -i delete qos where Name={qos}"}
    ]  # fmt: skip
    created = apply(portal, carol, create, "new queue for ticket 7")
    has(shown_row(qos), CREATED_ROW)
    row_created = shown_row(qos)
    with portal.client(headers=carol) as c:
        again = c.post("/api/v1/admin/qos/plan", json=create)
        assert again.status_code == 409, again.text
        listed = c.get("/api/v1/admin/qos").json()
    mine = next(r for r in listed if r["qos"]["name"] == qos)
    assert mine["qos"]["max_tres_per_job"] == {"cpu": 2, "mem": 1536}
    assert (mine["pending"], mine["running"]) == (0, 0)

    modify = {"action": "modify", "name": qos, "values": MODIFY_VALUES}
    with portal.client(headers=carol) as c:
        plan = c.post("/api/v1/admin/qos/plan", json=modify).json()
    assert "MaxWall: 90 -> none" in plan["notes"]
    assert plan["previous"]["qos"]["max_wall_minutes"] == 90
    modified = apply(portal, carol, modify, "raise the priority")
    has(shown_row(qos), MODIFIED_ROW)

    revert(portal, carol, modified["change_id"])
    assert shown_row(qos) == row_created  # every column, exactly

    deleted = apply(portal, carol, {"action": "delete", "name": qos}, "queue retired")
    assert shown_row(qos) is None
    revert(portal, carol, deleted["change_id"])
    assert shown_row(qos) == row_created

    revert(portal, carol, created["change_id"])  # the create's revert deletes it
    assert shown_row(qos) is None
    with portal.client(headers=carol) as c:
        audit = c.get("/api/v1/audit", params={"action": "admin.qos.modify"}).json()["items"]
        gone = c.post("/api/v1/admin/qos/plan", json=modify)
    assert any(e["username"] == "carol" and "raise the priority" in e["detail"] for e in audit)
    assert gone.status_code == 404


def test_an_apply_without_the_plan_shown_is_refused(
    portal: RunningPortal, carol: dict[str, str], qos: str
) -> None:
    change = {"action": "create", "name": qos, "values": {"priority": 5}}
    with portal.client(headers=carol) as c:
        r = c.post("/api/v1/admin/qos/apply", json={"change": change, "reason": "no plan"})
        assert r.status_code == 422 and "expect" in r.text
        stale = [["sacctmgr", "-i", "add", "qos", f"Name={qos}", "set", "Priority=6"]]
        body = {"change": change, "reason": "stale", "expect": stale}
        r = c.post("/api/v1/admin/qos/apply", json=body)
        assert r.status_code == 409 and "Priority=5" in r.json()["detail"]
    assert shown_row(qos) is None


def test_bad_values_are_422_and_nothing_runs(
    portal: RunningPortal, carol: dict[str, str], qos: str
) -> None:
    ran = portal.services.executor.ran
    before = len(ran)
    bad = [
        {"action": "create", "name": "-i", "values": {}},
        {"action": "create", "name": qos, "values": {"max_tres_per_user": "cpu=4 Flags=x"}},
        {"action": "create", "name": qos, "values": {"flags": ["NoSuchFlag"]}},
        {"action": "create", "name": qos, "values": {"priority": -3}},
        {"action": "delete", "name": qos, "values": {"priority": 1}},
        {"action": "create", "name": qos, "values": {"preempt": ["t_a2_nosuch"]}},
        {"action": "create", "name": qos, "values": {"preempt": [qos]}},
    ]
    with portal.client(headers=carol) as c:
        for change in bad:
            r = c.post("/api/v1/admin/qos/plan", json=change)
            assert r.status_code == 422, (change, r.text)
    assert not [x for x in list(ran)[before:] if x.as_user is not None]
    assert shown_row(qos) is None


def test_the_portal_role_is_needed(portal: RunningPortal, alice: dict[str, str], qos: str) -> None:
    change = {"action": "create", "name": qos, "values": {"priority": 5}}
    with portal.client(headers=alice) as c:
        assert c.get("/api/v1/admin/qos").status_code == 403
        assert c.post("/api/v1/admin/qos/plan", json=change).status_code == 403
        expect = [["sacctmgr", "-i", "add", "qos", f"Name={qos}", "set", "Priority=5"]]
        body = {"change": change, "reason": "x", "expect": expect}
        r = c.post("/api/v1/admin/qos/apply", json=body)
    assert r.status_code == 403 and "administrator role" in r.json()["detail"]
    assert shown_row(qos) is None


@pytest.fixture(scope="module")
def research_admins(make_portal: PortalFactory) -> RunningPortal:
    """A portal whose admin group is alice's own: the portal lets her in, Slurm won't."""
    return make_portal(admin_group="research")


def test_slurm_refuses_a_portal_admin_without_slurm_rights(
    research_admins: RunningPortal, qos: str
) -> None:
    alice = research_admins.login("alice")
    change = {"action": "create", "name": qos, "values": {"priority": 5}}
    with research_admins.client(headers=alice) as c:
        plan = c.post("/api/v1/admin/qos/plan", json=change)
        assert plan.status_code == 200, plan.text  # the portal lets her plan
        expect = [cmd["argv"] for cmd in plan.json()["commands"]]
        body = {"change": change, "reason": "try", "expect": expect}
        r = c.post("/api/v1/admin/qos/apply", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "slurm_permission_denied"
    assert "Access/permission denied" in r.json()["detail"]
    assert shown_row(qos) is None


def test_the_typed_action_as_alice_gets_slurms_refusal(
    devcluster: dict[str, Any], qos: str
) -> None:
    conf = Path(devcluster["slurm_conf"])
    bin_dir = Path(devcluster["bin_dir"]) if devcluster.get("bin_dir") else None
    runas = RunAs(method="runuser", slurm_conf=conf, slurm_bin_dir=bin_dir)
    adapter = SlurmAdapter(SlurmExecutor(slurm_conf=conf, bin_dir=bin_dir, runas=runas))
    create = admin_qos.qos_create(QosSpec(name=qos, priority=5))
    with pytest.raises(SlurmPermissionDenied, match="Access/permission denied"):
        adapter.admin.run(create, as_user="alice")
    assert admin_qos.read_qos(adapter.executor, qos) is None
    # carol may; what the portal reads back is what it asked for.
    adapter.admin.run(create, as_user="carol")
    assert admin_qos.read_qos(adapter.executor, qos) == QosSpec(name=qos, priority=5)
    delete = admin_qos.qos_delete(qos)
    with pytest.raises(SlurmPermissionDenied, match="Access/permission denied"):
        adapter.admin.run(delete, as_user="alice")
    adapter.admin.run(delete, as_user="carol")
    assert shown_row(qos) is None


def test_the_cli_plans_applies_and_reverts_as_carol(
    portal: RunningPortal, carol: dict[str, str], qos: str
) -> None:
    with portal.client(headers=carol) as c:
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli-qos", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()
    create = ["admin", "qos", "create", qos, "--why", "cli test", "--priority", "7"]
    create += ["--max-tres-per-user", "cpu=2,mem=1G", "--max-wall", "30"]

    dry = runner.invoke(cli, [*create, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    argv = f"$ sacctmgr -i add qos Name={qos} set Priority=7 MaxTRESPerUser=cpu=2,mem=1024M"
    assert f"{argv} MaxWall=30" in dry.output and shown_row(qos) is None

    done = runner.invoke(cli, [*create, "--yes"], env=env)
    assert done.exit_code == 0, done.output
    has(shown_row(qos), {"Priority": "7", "MaxTRESPU": "cpu=2,mem=1G", "MaxWall": "00:30:00"})
    row_created = shown_row(qos)

    modify = ["admin", "qos", "modify", qos, "--why", "cli", "--clear", "max-wall", "--yes"]
    changed = runner.invoke(cli, [*modify, "--max-jobs-per-user", "4"], env=env)
    assert changed.exit_code == 0, changed.output
    assert "Note: MaxWall: 30 -> none" in changed.output
    has(shown_row(qos), {"MaxWall": "", "MaxJobsPU": "4"})
    listed = runner.invoke(cli, ["admin", "qos", "list"], env=env)
    assert listed.exit_code == 0 and f"{qos} " in listed.output, listed.output
    change_id = changed.output.rsplit("Applied as change ", 1)[1].split(".")[0]
    undone = runner.invoke(cli, ["admin", "revert", change_id, "--why", "cli", "--yes"], env=env)
    assert undone.exit_code == 0, undone.output
    assert shown_row(qos) == row_created

    bad = runner.invoke(cli, ["admin", "qos", "modify", qos, "--why", "x", "--clear", "nope"])
    assert bad.exit_code == 1 and "--clear takes one of" in bad.output
