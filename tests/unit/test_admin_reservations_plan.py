"""Reservation plans: the conflict check (which jobs, and why), the revert built from
what slurmctld printed, update diffs, and the calendar grid.

The reservations are those recorded on each release (``scontrol -o show reservation``,
``test_slurm_admin_reservations.py``); the jobs and nodes the recorded 22.05 snapshot.
``read_all`` (one ``scontrol show``) is replaced by the recorded listing; running
the plans as the administrator is tested on the live cluster
(``tests/integration/test_admin_reservations.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.services.admin import reservations as admin_resv
from hpcportal.services.admin.reservations import ReservationRequest, calendar, conflicts
from hpcportal.slurm import admin_reservations as ar
from hpcportal.slurm.admin_reservations import Reservation, ReservationSpec
from hpcportal.slurm.states import JobStatus
from tests.unit.test_admin_plan import snapshot
from tests.unit.test_slurm_admin_reservations import LISTED

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[Reservation]:
    found = list(LISTED)
    monkeypatch.setattr(admin_resv, "read_all", lambda adapter: found)
    return found


def plan(request: dict[str, Any]) -> Any:
    change = ReservationRequest.model_validate(request)
    return admin_resv.plan_request(None, snapshot(), change)  # type: ignore[arg-type]


def test_running_jobs_on_the_nodes_conflict_until_they_end() -> None:
    snap = snapshot()
    running = next(j for j in snap.jobs if j.status == JobStatus.RUNNING and j.node_names)
    nodes = running.node_names[:1]
    hit = {
        j.job_id: j
        for j in conflicts(snap, nodes, NOW + timedelta(minutes=1), NOW + timedelta(hours=1))
    }
    assert hit[running.id].conflict is not None
    assert (hit[running.id].conflict or "").startswith(f"running on {nodes[0]} until ")
    end = admin_resv._job_end(running)
    if end is not None:  # a window after the job's end does not conflict with it
        after = conflicts(snap, nodes, end + timedelta(minutes=1), end + timedelta(hours=1))
        assert running.id not in {j.job_id for j in after}
    elsewhere = conflicts(snap, ["viz-node001"], NOW, NOW + timedelta(hours=1))
    assert running.id not in {j.job_id for j in elsewhere} or "viz-node001" in running.node_names


def test_pending_jobs_of_a_partition_holding_the_nodes_conflict() -> None:
    snap = snapshot()
    pending = next(j for j in snap.jobs if j.status in (JobStatus.QUEUED, JobStatus.QUEUED_HELD))
    part = next(p for p in snap.partitions if p.name == pending.partition)
    hit = {j.job_id: j for j in conflicts(snap, part.node_names[:1], NOW, NOW + timedelta(hours=1))}
    assert hit[pending.id].conflict is not None
    assert (hit[pending.id].conflict or "").startswith(f"pending in {pending.partition}")
    other = [p for p in snap.partitions if not set(p.node_names) & set(part.node_names)]
    if other:
        elsewhere = conflicts(snap, other[0].node_names, NOW, NOW + timedelta(hours=1))
        assert pending.id not in {j.job_id for j in elsewhere}


def test_a_create_plans_its_command_conflicts_and_delete(listed: list[Reservation]) -> None:
    snap = snapshot()
    running = next(j for j in snap.jobs if j.status == JobStatus.RUNNING and j.node_names)
    start = (NOW + timedelta(minutes=5)).isoformat()
    p = plan(
        {
            "action": "create",
            "name": "t_new",
            "values": {
                "start": start,
                "duration_minutes": 60,
                "nodes": running.node_names[0],
                "users": ["carol"],
                "flags": ["MAINT"],
            },
        }
    )
    assert p.argv() == [
        list(
            ar.reservation_create(
                ReservationSpec(
                    name="t_new",
                    start=datetime.fromisoformat(start),
                    duration_minutes=60,
                    nodes=running.node_names[0],
                    users=["carol"],
                    flags=["MAINT"],
                )
            ).argv
        )
    ]
    assert running.id in {j.job_id for j in p.affects}
    assert any("IGNORE_JOBS" in n for n in p.notes)  # busy nodes need it
    assert [list(c.argv) for c in p.revert] == [["scontrol", "delete", "ReservationName=t_new"]]
    with pytest.raises(Conflict, match="already exists"):
        plan(
            {
                "action": "create",
                "name": "rec_resv_maint",
                "values": {"duration_minutes": 5, "nodes": "node001", "users": "carol"},
            }
        )
    with pytest.raises(NotFound, match="nosuch007"):
        plan(
            {
                "action": "create",
                "name": "t_x",
                "values": {"duration_minutes": 5, "nodes": "nosuch007", "users": "carol"},
            }
        )
    with pytest.raises(InvalidInput, match="flag"):
        plan(
            {
                "action": "create",
                "name": "t_x",
                "values": {
                    "duration_minutes": 5,
                    "nodes": "node001",
                    "users": "carol",
                    "flags": "SPEC_NODES",
                },
            }
        )


def test_an_update_is_reverted_to_the_values_read(listed: list[Reservation]) -> None:
    p = plan(
        {
            "action": "update",
            "name": "rec_resv_maint",
            "values": {"duration_minutes": 180, "users": ["carol", "dave"], "flags": ["MAINT"]},
        }
    )
    assert p.argv() == [
        [
            "scontrol",
            "update",
            "ReservationName=rec_resv_maint",
            "EndTime=2027-01-05T11:00:00",
            "Users=carol,dave",
            "Flags=-IGNORE_JOBS",
        ]
    ]
    assert [list(c.argv) for c in p.revert] == [
        [
            "scontrol",
            "update",
            "ReservationName=rec_resv_maint",
            "EndTime=2027-01-05T10:00:00",
            "Users=carol",
            "Flags=IGNORE_JOBS",
        ]
    ]
    assert "users: carol -> carol,dave" in p.notes
    moved = plan(
        {"action": "update", "name": "rec_resv_maint", "values": {"start": "2027-01-06T08:00:00Z"}}
    )
    assert moved.argv()[0][3:] == ["StartTime=2027-01-06T08:00:00", "EndTime=2027-01-06T10:00:00"]
    with pytest.raises(InvalidInput, match="nothing to change"):
        plan({"action": "update", "name": "rec_resv_maint", "values": {"users": "carol"}})
    with pytest.raises(InvalidInput, match="at least one user or account"):
        plan({"action": "update", "name": "rec_resv_maint", "values": {"users": []}})
    with pytest.raises(NotFound):
        plan({"action": "update", "name": "t_none", "values": {"users": "carol"}})


def test_a_delete_is_reverted_by_creating_it_again(
    listed: list[Reservation], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = plan({"action": "delete", "name": "rec_resv_users"})
    assert p.argv() == [["scontrol", "delete", "ReservationName=rec_resv_users"]]
    assert [list(c.argv) for c in p.revert] == [
        [
            "scontrol",
            "create",
            "reservation",
            "ReservationName=rec_resv_users",
            "StartTime=2027-02-01T00:00:00",
            "EndTime=2027-02-02T12:30:00",
            "Nodes=node001",
            "Accounts=physics,research",
            "PartitionName=normal",
        ]
    ]
    started = LISTED[0].model_copy(
        update={"start_time": NOW - timedelta(hours=1), "end_time": NOW + timedelta(hours=1)}
    )
    monkeypatch.setattr(admin_resv, "read_all", lambda adapter: [started])
    p = plan({"action": "delete", "name": "rec_resv_maint"})
    (again,) = p.revert
    assert "StartTime=now" in again.argv and "Flags=IGNORE_JOBS,MAINT" in again.argv
    assert any("has started" in n for n in p.notes)


def test_the_calendar_marks_maintenance_per_node_and_day() -> None:
    snap = snapshot()
    cal = calendar(snap, LISTED, start=datetime(2027, 1, 4, tzinfo=UTC), days=3)
    assert [d.day for d in cal.days] == [4, 5, 6]
    rows = {r.node: r.cells for r in cal.rows}
    assert [c.names for c in rows["node001"]] == [[], ["rec_resv_maint"], []]
    assert rows["node002"][1].maintenance and not rows["node003"][1].names
    assert {r.reservation.name: r.maintenance for r in cal.reservations} == {
        "rec_resv_maint": True,
        "rec_resv_users": False,
    }


def test_far_times_are_refused_before_any_arithmetic(listed: list[Reservation]) -> None:
    with pytest.raises(ValueError, match="year"):  # the request itself: a 422
        plan({"action": "update", "name": "rec_resv_maint",
              "values": {"start": "9999-12-31T23:00:00Z", "duration_minutes": 600}})  # fmt: skip
    with pytest.raises(InvalidInput, match="year"):
        calendar(snapshot(), LISTED, start=datetime(9999, 12, 31, tzinfo=UTC))
