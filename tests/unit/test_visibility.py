"""Slurm's PrivateData rules (``services.visibility``) and reading them from Slurm.

The recordings under ``fixtures/slurm/privacy`` come from a dev cluster brought up with
``--private-data jobs,usage`` and bob made coordinator of ``physics``; the policy's
answers are checked against what ``sshare`` printed there as alice, and against the
rules of ``man slurm.conf`` / ``slurmdbd.conf`` row by row.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import (
    cluster_nodes,
    normalize_private_data,
    render_slurm_conf,
    render_slurmdbd_conf,
)
from hpcportal.errors import Forbidden
from hpcportal.services import snapshot as snapshot_module
from hpcportal.services.cluster import partition_loads, summarize
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotHealth, SnapshotService
from hpcportal.services.visibility import EVERYONE, Visibility, visible_jobs
from hpcportal.slurm import parse
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import (
    PRIVATE_DATA_FLAGS,
    AccountingRecord,
    Association,
    Job,
    PrivateData,
    SlurmRoles,
)
from hpcportal.slurm.states import JobStatus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
PRIVACY = FIXTURES / "privacy"

ROLES = SlurmRoles(
    admin_levels={"carol": "Administrator", "olga": "Operator"},
    coordinators={"bob": frozenset({"physics"})},
)
JOBS_USAGE = PrivateData(flags=frozenset({"jobs", "usage"}), slurm_user="slurm")
NONE = PrivateData()


def principal(name: str, role: str = "user") -> Principal:
    return Principal(username=name, uid=1000, gid=1000, groups=(), role=role)  # type: ignore[arg-type]


def job(job_id: int, user: str, account: str) -> Job:
    return Job(
        id=str(job_id),
        job_id=job_id,
        name=f"j{job_id}",
        user=user,
        account=account,
        partition="normal",
        state="RUNNING",
        status=JobStatus.RUNNING,
    )


QUEUE = [job(1, "alice", "research"), job(2, "bob", "research"), job(3, "dave", "physics")]


def ids(jobs: object) -> list[int]:
    return [j.job_id for j in jobs]  # type: ignore[attr-defined]


# --- reading PrivateData and the roles ----------------------------------------------------


def test_controller_private_data_from_scontrol_show_config() -> None:
    private = parse.parse_controller_private_data(
        (PRIVACY / "scontrol_show_config.txt").read_bytes()
    )
    assert private == PrivateData(
        flags=frozenset({"jobs", "usage"}), slurm_user="root", version="22.05.8"
    )
    assert private.release() == (22, 5)


def test_database_private_data_is_slurmdbds_section_not_the_clients() -> None:
    text = (PRIVACY / "sacctmgr_show_config.txt").read_text()
    head, sep, dbd = text.partition("SlurmDBD configuration:")
    assert sep and "PrivateData" in head and "PrivateData" in dbd
    # The client's own slurm.conf part says none; slurmdbd's part is what sacct obeys.
    client_none = head.replace("jobs,usage", "none")
    private = parse.parse_database_private_data((client_none + sep + dbd).encode())
    assert private.flags == {"jobs", "usage"} and private.slurm_user == "root"
    assert private.version == "22.05.8"  # SLURMDBD_VERSION, slurmdbd's own
    dbd_none = head + sep + dbd.replace("jobs,usage", "none")
    assert parse.parse_database_private_data(dbd_none.encode()).flags == frozenset()


def test_config_without_private_data_is_an_error_not_none() -> None:
    """An answer the portal cannot read must never be taken for "nothing private"."""
    with pytest.raises(ValueError):
        parse.parse_controller_private_data(b"Configuration data as of 2026-12-02\n")
    with pytest.raises(ValueError):
        parse.parse_database_private_data(b"PrivateData = none\n")


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        ("none", set()),
        ("", set()),
        ("jobs,usage", {"jobs", "usage"}),
        ("job", {"jobs"}),  # Slurm tests substrings, as here
        ("accounts,users,reservations,events", {"accounts", "users", "reservations", "events"}),
        ("nodes,partitions,cloud", {"nodes", "partitions", "cloud"}),
        ("all", set(PRIVATE_DATA_FLAGS)),
    ],
)
def test_private_data_flags(value: str, flags: set[str]) -> None:
    assert parse.private_data_flags(value) == flags


def test_roles_from_sacctmgr_withcoord() -> None:
    roles = parse.parse_roles((PRIVACY / "sacctmgr_user_withcoord.txt").read_bytes())
    assert roles.admin_levels == {"carol": "Administrator", "root": "Administrator"}
    assert roles.coordinators == {"bob": frozenset({"physics"})}
    assert roles.is_operator("carol") and not roles.is_operator("alice")


# --- the policy table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("private", "viewer", "jobs"),
    [
        (NONE, "alice", [1, 2, 3]),  # without PrivateData: everything, as today
        (JOBS_USAGE, "alice", [1]),  # own only
        (JOBS_USAGE, "bob", [2, 3]),  # own, and physics which bob coordinates
        (JOBS_USAGE, "dave", [3]),
        (JOBS_USAGE, "carol", [1, 2, 3]),  # AdminLevel=Administrator
        (JOBS_USAGE, "olga", [1, 2, 3]),  # AdminLevel=Operator
        (JOBS_USAGE, "slurm", [1, 2, 3]),  # SlurmUser
        (JOBS_USAGE, "root", [1, 2, 3]),
        (PrivateData(flags=frozenset({"usage"})), "alice", [1, 2, 3]),
        (PrivateData(flags=frozenset({"cloud"})), "alice", [1, 2, 3]),  # hides nothing
    ],
)
def test_which_jobs(private: PrivateData, viewer: str, jobs: list[int]) -> None:
    vis = Visibility.of(viewer, private, ROLES)
    assert [j.job_id for j in QUEUE if vis.sees_job(j)] == jobs


def test_the_portals_admin_role_grants_nothing_slurm_does_not() -> None:
    """A member of the portal's admin group without an AdminLevel sees what Slurm shows."""
    vis = Visibility.of(principal("erin", role="admin"), JOBS_USAGE, ROLES)
    assert [j.job_id for j in QUEUE if vis.sees_job(j)] == []


def test_accounting_records_follow_the_same_rule() -> None:
    record = AccountingRecord(
        id="2", job_id=2, name="x", user="bob", account="research", state="COMPLETED",
        status=JobStatus.COMPLETED,
    )  # fmt: skip
    assert not Visibility.of("alice", JOBS_USAGE, ROLES).sees_job(record)
    assert Visibility.of("bob", JOBS_USAGE, ROLES).sees_job(record)
    assert Visibility.of("alice", NONE, ROLES).sees_job(record)


def test_fairshare_as_sshare_prints_it() -> None:
    rows = parse.parse_sshare((PRIVACY / "sshare.txt").read_bytes())
    as_alice = parse.parse_sshare((PRIVACY / "sshare_as_alice.txt").read_bytes())
    recorded_roles = parse.parse_roles((PRIVACY / "sacctmgr_user_withcoord.txt").read_bytes())
    vis = Visibility.of("alice", JOBS_USAGE, recorded_roles)
    assert (
        [(r.account, r.user) for r in rows if vis.sees_usage(r)]
        == [(r.account, r.user) for r in as_alice]
        == [("research", "alice")]
    )
    bob = Visibility.of("bob", JOBS_USAGE, recorded_roles)
    assert {(r.account, r.user) for r in rows if bob.sees_usage(r)} == {
        ("physics", None),
        ("physics", "dave"),
        ("research", "bob"),
    }
    assert all(Visibility.of("alice", NONE, ROLES).sees_usage(r) for r in rows)


def _assoc(account: str, user: str | None, parent: str | None = None) -> Association:
    return Association(cluster="hpcdev", account=account, user=user, parent=parent)


TREE = [
    _assoc("root", None),
    _assoc("root", "root"),
    _assoc("physics", None, "root"),
    _assoc("physics", "dave"),
    _assoc("optics", None, "physics"),
    _assoc("optics", "erin"),
    _assoc("research", None, "root"),
    _assoc("research", "alice"),
    _assoc("research", "bob"),
]


def pairs(rows: list[Association]) -> list[tuple[str, str | None]]:
    return [(a.account, a.user) for a in rows]


def users_private(version: str) -> PrivateData:
    return PrivateData(flags=frozenset({"users"}), version=version)


def test_associations_with_private_users_before_23_11() -> None:
    """22.05 and 23.02 (lft/rgt): own and coordinated accounts' rows, and every account
    row above them (as sacctmgr printed for alice on the 22.05 dev cluster)."""
    private = users_private("22.05.8")
    assert pairs(Visibility.of("alice", private, ROLES).associations(TREE)) == [
        ("root", None),
        ("research", None),
        ("research", "alice"),
    ]
    assert pairs(Visibility.of("bob", private, ROLES).associations(TREE)) == [
        ("root", None),
        ("physics", None),
        ("physics", "dave"),
        ("research", None),
        ("research", "bob"),
    ]


@pytest.mark.parametrize("version", ["24.11.5", "26.05.5", "23.11.0", ""])
def test_associations_with_private_users_from_23_11(version: str) -> None:
    """23.11 and later (lineage): own rows and the coordinated accounts' subtrees, no
    parents (as sacctmgr printed for alice and bob on the 24.11 dev cluster); an unknown
    release gets this rule, the one that shows fewer rows to a regular user."""
    private = users_private(version)
    assert pairs(Visibility.of("alice", private, ROLES).associations(TREE)) == [
        ("research", "alice")
    ]
    assert pairs(Visibility.of("bob", private, ROLES).associations(TREE)) == [
        ("physics", None),
        ("physics", "dave"),
        ("optics", None),
        ("optics", "erin"),
        ("research", "bob"),
    ]


def test_associations_unrestricted() -> None:
    assert Visibility.of("carol", users_private("24.11.5"), ROLES).associations(TREE) == TREE
    assert Visibility.of("alice", JOBS_USAGE, ROLES).associations(TREE) == TREE


def test_nodes_and_partitions_are_refused_like_sinfo_refuses_them() -> None:
    private = PrivateData(flags=frozenset({"nodes", "partitions"}))
    vis = Visibility.of("alice", private, ROLES)
    for flag in ("nodes", "partitions"):
        with pytest.raises(Forbidden):
            vis.require(flag)
        Visibility.of("carol", private, ROLES).require(flag)
        Visibility.of("alice", NONE, ROLES).require(flag)
    vis.require("jobs")  # jobs are filtered, never refused


def test_keys_group_exactly_the_people_who_see_the_same() -> None:
    alice = Visibility.of("alice", JOBS_USAGE, ROLES)
    assert alice.jobs_key != Visibility.of("dave", JOBS_USAGE, ROLES).jobs_key
    assert Visibility.of("carol", JOBS_USAGE, ROLES).jobs_key == EVERYONE.jobs_key
    assert Visibility.of("alice", NONE, ROLES).view_key == EVERYONE.view_key


# --- views of a snapshot ------------------------------------------------------------------


def snapshot(private: PrivateData) -> ClusterSnapshot:
    nodes = parse.parse_sinfo((FIXTURES / "sinfo.json").read_bytes())
    partitions = parse.parse_partitions((FIXTURES / "scontrol_partitions.txt").read_bytes())
    return ClusterSnapshot.build(1, 0.1, list(QUEUE), nodes, partitions, private, ROLES)


HEALTH = SnapshotHealth(taken_at=None, age_seconds=None, stale=False, last_error=None, generation=1)


def test_summary_counts_only_the_jobs_one_sees() -> None:
    snap = snapshot(JOBS_USAGE)
    alice = Visibility.of("alice", snap.private_data, snap.roles)
    assert ids(visible_jobs(snap, alice)) == [1]
    assert summarize(snap, HEALTH, alice).jobs_total == 1
    assert (
        summarize(snap, HEALTH, Visibility.of("carol", snap.private_data, snap.roles)).jobs_total
        == 3
    )
    running = sum(p.jobs_running for p in partition_loads(snap, alice))
    assert running == 1
    # Memoized per visibility: alice's view does not leak into bob's.
    bob = Visibility.of("bob", snap.private_data, snap.roles)
    assert summarize(snap, HEALTH, bob).jobs_total == 2


def test_summary_without_nodes_or_partitions_when_private() -> None:
    snap = snapshot(PrivateData(flags=frozenset({"nodes", "partitions"})))
    vis = Visibility.of("alice", snap.private_data, snap.roles)
    summary = summarize(snap, HEALTH, vis)
    assert summary.nodes_total == 0 and summary.cpus.total == 0 and summary.partitions == []
    assert summary.jobs_total == 3  # jobs are not private here
    full = summarize(snap, HEALTH, Visibility.of("carol", snap.private_data, snap.roles))
    assert full.nodes_total > 0 and full.partitions


# --- the dev cluster renders PrivateData --------------------------------------------------


def test_dev_cluster_renders_private_data_into_both_configs() -> None:
    layout = Layout(Path("/tmp/hpcdev-render"))
    flags = normalize_private_data("usage, Jobs")
    assert flags == "jobs,usage"
    assert "PrivateData=jobs,usage\n" in render_slurm_conf(
        layout, "h", cluster_nodes(True), private_data=flags
    )
    assert "PrivateData=jobs,usage\n" in render_slurmdbd_conf(layout, "pw", private_data=flags)
    assert "PrivateData" not in render_slurm_conf(layout, "h", cluster_nodes(True))
    assert normalize_private_data("none") == ""
    with pytest.raises(ValueError):
        normalize_private_data("jobs,secrets")


def test_the_portal_says_when_its_own_account_cannot_see_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Run as a non-operator, squeue --all lists only the portal's own jobs: say so once."""
    settings = Settings(jwt_secret=SecretStr("x" * 48), database_url="sqlite://")
    service = SnapshotService(cast(SlurmAdapter, object()), settings)
    account = {"name": "hpcportal"}
    monkeypatch.setattr(
        snapshot_module.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name=account["name"])
    )
    with caplog.at_level("WARNING", logger="hpcportal.services.snapshot"):
        service._warn_if_blind(JOBS_USAGE, ROLES)
        service._warn_if_blind(JOBS_USAGE, ROLES)  # once per setting
        operator = SlurmRoles(admin_levels={"hpcportal": "Operator"})
        service._warn_if_blind(PrivateData(flags=frozenset({"nodes"})), operator)
        service._warn_if_blind(PrivateData(flags=frozenset({"cloud"})), ROLES)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "jobs,usage" in warnings[0] and "hpcportal" in warnings[0]
