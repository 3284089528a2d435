"""Admin changes: the argv of each node request, node plans (affected jobs, previous
state, revert commands) and the stored changes a revert is built from.

Applying runs Slurm as the administrator: that is tested on the live dev cluster
(tests/integration/test_admin_nodes.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from hpcportal.db.models import AdminChange, AuditEntry
from hpcportal.db.session import Database
from hpcportal.errors import Conflict, InvalidInput, NotFound, SlurmInvalidRequest
from hpcportal.runas.helper import check_slurm_argv
from hpcportal.runas.helper_walk import Refused
from hpcportal.services.admin.nodes import NodeChange, node_rows, plan_nodes
from hpcportal.services.admin.plan import (
    PlanView,
    apply,
    changes,
    check_expected,
    revert_plan,
)
from hpcportal.services.identity import Principal
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import parse
from hpcportal.slurm.admin_actions import (
    DownNodes,
    DrainNodes,
    RebootNodes,
    ResumeNodes,
    SlurmAdmin,
    node_commands,
)
from hpcportal.slurm.states import NodeStatus
from tests.unit.slurm_fixtures import recorded
from tests.unit.test_slurm_admin_nodes import Recorded

CAROL = Principal("carol", 1004, 1003, ("hpc-admins",), "admin")


def snapshot(drained: str | None = None) -> ClusterSnapshot:
    nodes = parse.parse_sinfo(recorded("sinfo.json"))
    if drained:
        nodes = [
            n.model_copy(
                update={
                    "state": "drained",
                    "status": NodeStatus.DRAINED,
                    "reason": "old fan",
                    "reason_set_by": "dave",
                }
            )
            if n.name == drained
            else n
            for n in nodes
        ]
    return ClusterSnapshot.build(
        1,
        0.1,
        parse.parse_squeue(recorded("squeue.json")),
        nodes,
        parse.parse_partitions(recorded("scontrol_partitions.txt")),
    )


def argv(request: DrainNodes | DownNodes | ResumeNodes | RebootNodes) -> list[str]:
    (command,) = node_commands(request)
    return list(command.argv)


def test_each_node_request_is_one_scontrol_argv() -> None:
    assert argv(DrainNodes("node003", "bad DIMM")) == [
        "scontrol",
        "update",
        "NodeName=node003",
        "State=DRAIN",
        "Reason=bad DIMM",
    ]
    assert argv(DownNodes("node[001-002]", "PSU")) == [
        "scontrol",
        "update",
        "NodeName=node[001-002]",
        "State=DOWN",
        "Reason=PSU",
    ]
    resume = ["scontrol", "update", "NodeName=node003", "State=RESUME"]
    assert argv(ResumeNodes("node003")) == resume
    assert argv(RebootNodes("node003", "kernel", "down", asap=False)) == [
        "scontrol",
        "reboot",
        "nextstate=DOWN",
        "reason=kernel",
        "node003",
    ]
    (reboot,) = node_commands(RebootNodes("node003", "new kernel"))
    assert reboot.shown() == "scontrol reboot ASAP nextstate=RESUME 'reason=new kernel' node003"


@pytest.mark.parametrize(
    "request_",
    [
        DrainNodes("node003", ""),
        DrainNodes("node003", "   "),
        DrainNodes("node003", "two\nlines"),
        DrainNodes("node003", "x" * 201),
        DrainNodes("-h", "r"),
        DrainNodes("node003 node004", "r"),
        DownNodes("node003", ""),
        RebootNodes("node003", ""),
        ResumeNodes("State=DOWN"),
    ],
)
def test_bad_nodes_and_reasons_are_refused_before_slurm(
    request_: DrainNodes | DownNodes | ResumeNodes | RebootNodes,
) -> None:
    with pytest.raises(InvalidInput):
        node_commands(request_)


def test_a_drain_plan_names_the_running_jobs_and_the_way_back() -> None:
    plan = plan_nodes(NodeChange(action="drain", nodes="node001", reason="ECC"), snapshot())
    assert plan.kind == "node.drain" and plan.target == "node:node001"
    assert plan.argv() == [["scontrol", "update", "NodeName=node001", "State=DRAIN", "Reason=ECC"]]
    assert [j.job_id for j in plan.affects] == ["6"]  # running; 1 and 9 have ended
    assert plan.previous["node001"]["status"] == "mixed"
    assert [list(c.argv) for c in plan.revert] == [
        ["scontrol", "update", "NodeName=node001", "State=RESUME"]
    ]
    view = PlanView.of(plan)
    assert view.revertible and view.commands[0].shown.endswith("Reason=ECC")


def test_resuming_a_drained_node_reverts_to_drained_with_its_old_reason() -> None:
    snap = snapshot(drained="node003")
    plan = plan_nodes(NodeChange(action="resume", nodes="node003"), snap)
    assert plan.affects == ()
    assert plan.previous["node003"]["reason"] == "old fan"
    assert [list(c.argv) for c in plan.revert] == [
        ["scontrol", "update", "NodeName=node003", "State=DRAIN", "Reason=old fan"]
    ]
    row = next(r for r in node_rows(snap) if r.name == "node003")
    assert (row.status, row.reason, row.reason_set_by) == ("drained", "old fan", "dave")


def test_a_hostlist_plans_every_node_and_a_reboot_has_no_revert() -> None:
    plan = plan_nodes(
        NodeChange(action="reboot", nodes="node[001-002]", reason="kernel"), snapshot()
    )
    assert set(plan.previous) == {"node001", "node002"}
    assert plan.revert == ()
    assert plan.argv()[0][-1] == "node[001-002]"


def test_unknown_nodes_and_missing_reasons_are_refused() -> None:
    with pytest.raises(NotFound, match="node099"):
        plan_nodes(NodeChange(action="drain", nodes="node099", reason="x"), snapshot())
    with pytest.raises(InvalidInput):
        plan_nodes(NodeChange(action="drain", nodes="node003"), snapshot())


def test_a_plan_that_changed_since_it_was_shown_is_a_conflict() -> None:
    plan = plan_nodes(NodeChange(action="drain", nodes="node003", reason="a"), snapshot())
    check_expected(plan, None)
    check_expected(plan, plan.argv())
    with pytest.raises(Conflict, match="Reason=a"):
        check_expected(plan, [["scontrol", "update", "NodeName=node003", "State=DOWN"]])


def test_a_stored_change_reverts_once(database: Database) -> None:
    with database.session() as session:
        row = AdminChange(
            at=datetime.now(UTC),
            username="carol",
            kind="node.drain",
            target="node:node003",
            reason="test",
            commands=[["scontrol", "update", "NodeName=node003", "State=DRAIN", "Reason=r"]],
            previous={"node003": {"status": "idle"}},
            revert=[["scontrol", "update", "NodeName=node003", "State=RESUME"]],
        )
        session.add(row)
        session.flush()
        change_id = row.id
        bad = AdminChange(**{**_fields(row), "revert": [["sh", "-c", "true"]]})
        session.add(bad)
        session.flush()
        bad_id = bad.id
    plan = revert_plan(database, change_id)
    assert plan.kind == "node.drain.revert" and plan.reverts == change_id
    assert plan.argv() == [["scontrol", "update", "NodeName=node003", "State=RESUME"]]
    assert [list(c.argv) for c in plan.revert] == [
        ["scontrol", "update", "NodeName=node003", "State=DRAIN", "Reason=r"]
    ]
    with pytest.raises(Conflict, match="does not run"):
        revert_plan(database, bad_id)
    with pytest.raises(NotFound):
        revert_plan(database, 999_999)
    with database.session() as session:
        stored = session.get(AdminChange, change_id)
        assert stored is not None
        stored.reverted_by = bad_id
    with pytest.raises(Conflict, match="already reverted"):
        revert_plan(database, change_id)
    listed = changes(database, kind_prefix="node.")
    assert [c.id for c in listed] == [bad_id, change_id]
    assert not listed[1].revertible


def _fields(row: AdminChange) -> dict[str, object]:
    names = ("at", "username", "kind", "target", "reason", "commands", "previous", "revert")
    return {name: getattr(row, name) for name in names}


def test_the_run_as_helper_lets_the_node_commands_through_and_nothing_beside() -> None:
    """The helper's allow-list and ``node_commands`` agree: every command the plan can
    show runs; other ``scontrol update``/``reboot`` forms are refused before Slurm."""
    requests = [
        DrainNodes("node[001-002]", "bad DIMM; ticket #4 (see log)"),
        DownNodes("node003", "PSU"),
        ResumeNodes("gpu001"),
        RebootNodes("node003", "kernel"),
        RebootNodes("node003", "kernel", "down", asap=False),
    ]
    for request_ in requests:
        for command in node_commands(request_):
            assert check_slurm_argv(list(command.argv)) == list(command.argv)
    for bad in (
        ["scontrol", "update", "NodeName=node003", "State=IDLE"],
        ["scontrol", "update", "NodeName=node003", "State=DRAIN", "Weight=9"],
        ["scontrol", "update", "PartitionName=normal", "State=DOWN"],
        ["scontrol", "update", "NodeName=node003", "State=DOWN", "Reason=a", "Weight=1"],
        ["scontrol", "reboot", "ASAP", "nextstate=RESUME", "reason=x", "node003", "node004"],
        ["scontrol", "reboot", "nextstate=IDLE", "reason=x", "node003"],
        ["scontrol", "shutdown"],
    ):
        with pytest.raises(Refused):
            check_slurm_argv(bad)


def test_nodes_read_now_win_over_the_snapshot_for_the_previous_state() -> None:
    """The snapshot may be seconds old; the state a revert restores is Slurm's now."""
    now = snapshot(drained="node003").nodes
    plan = plan_nodes(NodeChange(action="down", nodes="node003", reason="PSU"), snapshot(), now)
    assert plan.previous["node003"]["status"] == "drained"
    assert [list(c.argv) for c in plan.revert] == [
        ["scontrol", "update", "NodeName=node003", "State=DRAIN", "Reason=old fan"]
    ]
    with pytest.raises(NotFound):
        plan_nodes(NodeChange(action="resume", nodes="node001"), snapshot(), now[3:4])


def _drain_change(database: Database) -> int:
    with database.session() as session:
        row = AdminChange(
            at=datetime.now(UTC),
            username="carol",
            kind="node.drain",
            target="node:node003",
            reason="test",
            commands=[["scontrol", "update", "NodeName=node003", "State=DRAIN", "Reason=r"]],
            previous={"node003": {"status": "idle"}},
            revert=[["scontrol", "update", "NodeName=node003", "State=RESUME"]],
        )
        session.add(row)
        session.flush()
        return row.id


def test_apply_runs_the_plan_audits_it_and_a_revert_runs_once(database: Database) -> None:
    """Recorded answers of 22.05 stand in at the run-as boundary (test_slurm_admin_nodes)."""
    change_id = _drain_change(database)
    refused = Recorded("22.05", "scontrol_update_node_resume_idle")
    with pytest.raises(SlurmInvalidRequest):
        apply(SlurmAdmin(refused), database, revert_plan(database, change_id), CAROL, "undo")
    plan = revert_plan(database, change_id)  # refused: the claim is released
    stale = revert_plan(database, change_id)
    done = Recorded("22.05", "scontrol_update_node_resume_admin")
    applied = apply(SlurmAdmin(done), database, plan, CAROL, "undo", "127.0.0.1")
    assert applied.ran == plan.argv() == [list(r.argv) for r in done.ran]
    late = Recorded("22.05", "scontrol_update_node_resume_admin")
    with pytest.raises(Conflict, match="already reverted"):
        apply(SlurmAdmin(late), database, stale, CAROL, "undo again")
    assert list(late.ran) == []  # refused before anything ran
    with database.session() as session:
        undone = session.get(AdminChange, change_id)
        assert undone is not None and undone.reverted_by == applied.change_id
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "admin.node.drain.revert")
        ).all()
    assert [(e.username, e.result) for e in entries] == [("carol", "refused"), ("carol", "ok")]
    assert "undo" in (entries[1].detail or "") and "State=RESUME" in (entries[1].detail or "")
    with pytest.raises(InvalidInput):
        apply(SlurmAdmin(late), database, plan, CAROL, "  ")  # a reason is required
