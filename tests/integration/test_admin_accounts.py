"""Accounts, users and associations through the admin console on the live dev cluster.

carol (portal admin, Slurm ``AdminLevel=Administrator``) creates an account under
root and adds alice to it with limits; ``sacctmgr show assoc`` (as root, read here by
its own header, independently of the portal's reader) prints what was asked and what
the portal lists; each revert brings back every column exactly, a delete's revert
re-creates the account. What the executor ran is the plan that was shown, as carol.

dave (coordinator of physics in Slurm, not a portal admin) sees only the accounts he
coordinates, adds bob to physics and removes him, and is refused by Slurm for
research (403 with Slurm's reason); alice, neither admin nor coordinator, is refused
by the portal before anything runs.

Each test uses an account of its own (``t_ac_<random>``), removed when it ends; the
demo's accounts are changed only by bob's association with physics, removed too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from hpcportal.cli.main import app as cli
from tests.integration.portal_server import RunningPortal

COLUMNS = (
    "account,user,parentname,fairshare,grptres,grpjobs,grpsubmitjobs,maxjobs,"
    "maxsubmitjobs,maxwall,maxtres,qos,defaultqos"
)
ACCOUNT_VALUES: dict[str, Any] = {
    "fairshare": 5,
    "grp_jobs": 10,
    "grp_tres": "cpu=16",
    "qos": ["normal", "high"],
    "default_qos": "normal",
}
USER_VALUES: dict[str, Any] = {
    "fairshare": 2,
    "grp_tres": {"cpu": 8},
    "max_jobs": 3,
    "max_submit_jobs": 6,
    "max_wall_minutes": 90,
    "max_tres_per_job": "cpu=2,mem=1536M",
    "qos": ["normal"],
    "default_qos": "normal",
}
#: What sacctmgr prints for USER_VALUES (its own units and clock).
USER_ROW = {
    "Share": "2",
    "GrpTRES": "cpu=8",
    "MaxJobs": "3",
    "MaxSubmit": "6",
    "MaxWall": "01:30:00",
    "MaxTRES": "cpu=2,mem=1.50G",
    "QOS": "normal",
    "Def QOS": "normal",
}


def sacctmgr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sacctmgr", *args], capture_output=True, text=True, timeout=60, check=False
    )


def rows(account: str) -> dict[str, dict[str, str]]:
    """``sacctmgr show assoc`` of ``account`` keyed by user ('' for the account's own)."""
    done = sacctmgr(
        "--parsable2", "show", "assoc", "where", f"account={account}", f"format={COLUMNS}"
    )
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    found = [dict(zip(header.split("|"), ln.split("|"), strict=True)) for ln in lines]
    return {r["User"]: r for r in found if r["Account"] == account}


def has(row: dict[str, str] | None, expected: dict[str, str]) -> None:
    assert row is not None
    assert {k: row[k] for k in expected} == expected, row


@pytest.fixture
def account(devcluster: dict[str, Any]) -> Iterator[str]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster
    name = f"t_ac_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        for user in rows(name):
            if user:
                sacctmgr("-i", "delete", "user", "where", f"Name={user}", f"Account={name}")
        sacctmgr("-i", "delete", "account", "where", f"Name={name}")
    assert rows(name) == {}


@pytest.fixture
def bob_not_in_physics(devcluster: dict[str, Any]) -> Iterator[None]:
    os.environ["SLURM_CONF"] = devcluster["slurm_conf"]  # this run's cluster
    assert "bob" not in rows("physics"), "bob is in physics already: another run's leftover?"
    try:
        yield
    finally:
        sacctmgr("-i", "delete", "user", "where", "Name=bob", "Account=physics")
        sacctmgr("-i", "delete", "user", "where", "Name=dave", "Account=research")
    assert "bob" not in rows("physics") and "dave" not in rows("research")
    assert "bob" in rows("research")


def apply(
    portal: RunningPortal,
    headers: dict[str, str],
    path: str,
    change: dict[str, Any],
    why: str,
    *,
    status: int = 200,
) -> dict[str, Any]:
    """Plan, then apply what the plan showed; check the executor ran exactly that, as
    the person who asked."""
    with portal.client(headers=headers) as c:
        r = c.post(f"/api/v1/admin/accounts{path}/plan", json=change)
        assert r.status_code == 200, r.text
        shown = [cmd["argv"] for cmd in r.json()["commands"]]
        who = c.get("/api/v1/me").json()["user"]
        ran = portal.services.executor.ran
        ran.clear()  # it keeps the last 256: counting from its length stops when full
        body = {"change": change, "reason": why, "expect": shown}
        r = c.post(f"/api/v1/admin/accounts{path}/apply", json=body)
        assert r.status_code == status, r.text
    admin_runs = [x for x in list(ran) if x.as_user is not None]
    assert [list(x.argv) for x in admin_runs] == shown
    assert {x.as_user for x in admin_runs} == {who}
    if status == 200:
        assert r.json()["ran"] == shown
    return dict(r.json())


def revert(portal: RunningPortal, headers: dict[str, str], change_id: int) -> None:
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


def test_carol_manages_an_account_and_a_users_association(
    portal: RunningPortal, carol: dict[str, str], account: str
) -> None:
    create = {
        "action": "create",
        "name": account,
        "parent": "root",
        "description": "integration test",
        "values": ACCOUNT_VALUES,
    }
    apply(portal, carol, "", create, "new project")
    has(
        rows(account)[""],
        {"ParentName": "root", "Share": "5", "GrpJobs": "10", "GrpTRES": "cpu=16"},
    )
    assert rows(account)[""]["QOS"] == "high,normal"

    add = {"action": "add", "user": "alice", "account": account, "values": USER_VALUES}
    apply(portal, carol, "/users", add, "alice joins the project")
    added = rows(account)
    has(added["alice"], USER_ROW)

    # The portal's values are sacctmgr's.
    with portal.client(headers=carol) as c:
        view = c.get("/api/v1/admin/accounts").json()
    assert view["admin"] is True
    node = next(n for n in view["accounts"] if n["info"]["name"] == account)
    assert node["association"]["parent"] == "root"
    assert node["info"]["description"] == "integration test"
    (alice,) = node["users"]
    assert alice["user"] == "alice"
    assert alice["limits"] == {
        "fairshare": 2,
        "grp_tres": {"cpu": 8},
        "grp_jobs": None,
        "grp_submit_jobs": None,
        "max_jobs": 3,
        "max_submit_jobs": 6,
        "max_wall_minutes": 90,
        "max_tres_per_job": {"cpu": 2, "mem": 1536},
        "qos": ["normal"],
        "default_qos": "normal",
    }
    names = [n["info"]["name"] for n in view["accounts"]]
    assert names.index("root") < names.index(account)

    # A limit change, then its revert: every column exactly as before.
    modify = {
        "action": "modify",
        "user": "alice",
        "account": account,
        "values": {"max_jobs": None, "max_wall_minutes": 30, "fairshare": "parent"},
    }
    with portal.client(headers=carol) as c:
        plan = c.post("/api/v1/admin/accounts/users/plan", json=modify).json()
    assert "MaxWall: 90 -> 30" in plan["notes"] and "MaxJobs: 3 -> none" in plan["notes"]
    changed = apply(portal, carol, "/users", modify, "tighter wall time")
    has(rows(account)["alice"], {"MaxJobs": "", "MaxWall": "00:30:00", "Share": "parent"})
    revert(portal, carol, changed["change_id"])
    assert rows(account) == added

    # The account's own limits and description, and back.
    modify_account = {
        "action": "modify",
        "name": account,
        "description": "renamed project",
        "values": {"grp_jobs": 20, "max_jobs": 4},
    }
    changed = apply(portal, carol, "", modify_account, "more jobs")
    has(rows(account)[""], {"GrpJobs": "20", "MaxJobs": "4"})
    revert(portal, carol, changed["change_id"])
    assert rows(account) == added

    # Removing alice; the revert adds her back with her limits.
    remove = {"action": "remove", "user": "alice", "account": account}
    removed = apply(portal, carol, "/users", remove, "left the project")
    assert "alice" not in rows(account)
    revert(portal, carol, removed["change_id"])
    assert rows(account) == added

    # An account with users is not deleted (a revert could not re-create them).
    with portal.client(headers=carol) as c:
        r = c.post("/api/v1/admin/accounts/plan", json={"action": "delete", "name": account})
    assert r.status_code == 409 and "users alice" in r.json()["detail"]
    apply(portal, carol, "/users", remove, "left the project")
    own = rows(account)[""]
    deleted = apply(portal, carol, "", {"action": "delete", "name": account}, "project over")
    assert rows(account) == {}
    revert(portal, carol, deleted["change_id"])
    assert rows(account) == {"": own}


def test_a_coordinator_manages_users_of_their_own_account_only(
    portal: RunningPortal, bob_not_in_physics: None
) -> None:
    dave = dict(portal.login("dave"))
    with portal.client(headers=dave) as c:
        view = c.get("/api/v1/admin/accounts").json()
    assert view["admin"] is False and view["coordinates"] == ["physics"]
    assert [n["info"]["name"] for n in view["accounts"]] == ["physics"]

    add = {"action": "add", "user": "bob", "account": "physics"}
    apply(portal, dave, "/users", add, "bob helps on physics")
    assert "bob" in rows("physics")
    remove = {"action": "remove", "user": "bob", "account": "physics"}
    apply(portal, dave, "/users", remove, "done")
    assert "bob" not in rows("physics")

    # Research is not his: Slurm refuses, with its reason, whatever the portal shows.
    other = {"action": "add", "user": "dave", "account": "research"}
    refused = apply(portal, dave, "/users", other, "try", status=403)
    assert refused["code"] == "slurm_permission_denied"
    assert "Access/permission denied" in refused["detail"]
    assert "dave" not in rows("research")
    other = {"action": "remove", "user": "bob", "account": "research"}
    refused = apply(portal, dave, "/users", other, "try", status=403)
    assert refused["code"] == "slurm_permission_denied"
    assert "coordinator of account research" in refused["detail"]
    assert "bob" in rows("research")


def test_neither_admin_nor_coordinator_is_refused(
    portal: RunningPortal, alice: dict[str, str], account: str
) -> None:
    ran = portal.services.executor.ran
    ran.clear()
    change = {"action": "create", "name": account}
    expect = [["sacctmgr", "-i", "add", "account", f"Name={account}"]]
    with portal.client(headers=alice) as c:
        assert c.get("/api/v1/admin/accounts").status_code == 403
        assert c.post("/api/v1/admin/accounts/plan", json=change).status_code == 403
        body = {"change": change, "reason": "x", "expect": expect}
        r = c.post("/api/v1/admin/accounts/apply", json=body)
    assert r.status_code == 403 and "neither" in r.json()["detail"]
    assert not [x for x in list(ran) if x.as_user is not None]
    assert rows(account) == {}


def test_bad_input_and_stale_plans_run_nothing(
    portal: RunningPortal, carol: dict[str, str], account: str
) -> None:
    ran = portal.services.executor.ran
    ran.clear()
    bad = [
        ("", {"action": "create", "name": "-i"}),
        ("", {"action": "create", "name": account, "description": "a=b"}),
        ("", {"action": "create", "name": account, "parent": "t_ac_nosuch"}),
        ("", {"action": "create", "name": account, "values": {"max_jobs": -3}}),
        ("", {"action": "create", "name": account, "values": {"grp_tres": "cpu=4 x=y"}}),
        ("/users", {"action": "add", "user": "-bob", "account": "physics"}),
        ("/users", {"action": "add", "user": "bob", "account": account}),
    ]
    with portal.client(headers=carol) as c:
        for path, change in bad:
            r = c.post(f"/api/v1/admin/accounts{path}/plan", json=change)
            assert r.status_code in (404, 422), (change, r.text)
        change = {"action": "create", "name": account, "values": {"fairshare": 3}}
        r = c.post("/api/v1/admin/accounts/apply", json={"change": change, "reason": "x"})
        assert r.status_code == 422 and "expect" in r.text
        stale = [["sacctmgr", "-i", "add", "account", f"Name={account}", "Fairshare=4"]]
        body = {"change": change, "reason": "stale", "expect": stale}
        r = c.post("/api/v1/admin/accounts/apply", json=body)
        assert r.status_code == 409 and "Fairshare=3" in r.json()["detail"]
    assert not [x for x in list(ran) if x.as_user is not None]
    assert rows(account) == {}


def test_the_cli_plans_and_applies_as_carol(
    portal: RunningPortal, carol: dict[str, str], account: str
) -> None:
    with portal.client(headers=carol) as c:
        created = c.post(
            "/api/v1/auth/api-tokens", json={"name": "cli-accounts", "scopes": ["read", "write"]}
        )
        assert created.status_code == 201, created.text
    env = {"HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    runner = CliRunner()
    create = ["admin", "account", "create", account, "--why", "cli test", "--fairshare", "3"]
    dry = runner.invoke(cli, [*create, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"$ sacctmgr -i add account Name={account} Parent=root" in dry.output
    assert rows(account) == {}
    done = runner.invoke(cli, [*create, "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert rows(account)[""]["Share"] == "3"

    add = ["admin", "user", "add", "alice", account, "--why", "cli", "--max-wall", "30"]
    done = runner.invoke(cli, [*add, "--max-tres", "cpu=2", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    has(rows(account)["alice"], {"MaxWall": "00:30:00", "MaxTRES": "cpu=2"})
    modify = ["admin", "user", "modify", "alice", account, "--why", "cli", "--clear", "max-wall"]
    done = runner.invoke(cli, [*modify, "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert "Note: MaxWall: 30 -> none" in done.output
    has(rows(account)["alice"], {"MaxWall": "", "MaxTRES": "cpu=2"})
    listed = runner.invoke(cli, ["admin", "account", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"{account}  pending=0 running=0 fairshare=3" in listed.output
    assert "  - alice max-tres=cpu=2" in listed.output

    bad = runner.invoke(cli, [*modify[:-2], "--clear", "nope"], env=env)
    assert bad.exit_code == 1 and "--clear takes one of" in bad.output
