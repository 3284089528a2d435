"""Reservations in the Slurm boundary against every release's recorded answers.

Recorded by ``tests/fixtures/slurm/record-admin-reservations.sh`` on a dev cluster of
each release (``<release>/actions/scontrol_*reservation*.txt``). ``Recorded`` stands in
for the run-as process boundary only, as in ``test_slurm_admin_nodes.py``: the command
must be exactly the recorded one, as the recorded user; the executor's ``run`` and
``SlurmAdmin.run`` (their refusal classification) are the real ones. The reads are
decoded from the recorded stdout: ``scontrol -o show reservation`` on every release,
``scontrol --json=vX show reservation`` on 24.11 and 26.05 (22.05 refuses ``--json``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcportal.errors import SlurmInvalidRequest, SlurmOutputUnreadable, SlurmPermissionDenied
from hpcportal.runas.helper import check_slurm_argv
from hpcportal.runas.helper_walk import Refused
from hpcportal.slurm import admin_reservations as ar
from hpcportal.slurm.admin_actions import AdminCommand, SlurmAdmin
from hpcportal.slurm.admin_reservations import Reservation, ReservationSpec, ReservationValues
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import Ran
from hpcportal.slurm.formats import SlurmRelease
from tests.unit.test_slurm_admin_nodes import Recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
JSON_FORMAT = {"24.11": "v0.0.42", "26.05": "v0.0.45"}
YEAR = 2027  # the recordings were made in 2026: a year ahead
MAINT = ReservationSpec(
    name="rec_resv_maint",
    start=datetime(YEAR, 1, 5, 8, tzinfo=UTC),
    duration_minutes=120,
    nodes="node[001-002]",
    users=["carol"],
    flags=["MAINT", "IGNORE_JOBS"],
)
OTHER = ReservationSpec(
    name="rec_resv_users",
    start=datetime(YEAR, 2, 1, tzinfo=UTC),
    end=datetime(YEAR, 2, 2, 12, 30, tzinfo=UTC),
    node_count=1,
    accounts="research,physics",
    partition="normal",
)
#: What every release lists after the two creates.
LISTED = [
    Reservation(
        name="rec_resv_maint",
        start_time=datetime(YEAR, 1, 5, 8, tzinfo=UTC),
        end_time=datetime(YEAR, 1, 5, 10, tzinfo=UTC),
        nodes="node[001-002]",
        node_names=["node001", "node002"],
        node_count=2,
        partition=None,
        users=("carol",),
        accounts=(),
        flags=("MAINT", "IGNORE_JOBS", "SPEC_NODES"),
    ),
    Reservation(
        name="rec_resv_users",
        start_time=datetime(YEAR, 2, 1, tzinfo=UTC),
        end_time=datetime(YEAR, 2, 2, 12, 30, tzinfo=UTC),
        nodes="node001",
        node_names=["node001"],
        node_count=1,
        partition="normal",
        users=(),
        accounts=("physics", "research"),
        flags=(),
    ),
]


def stdout_of(release: str, name: str) -> bytes:
    return Recorded(release, name).stdout.encode()


def run(release: str, name: str, command: AdminCommand) -> Recorded:
    executor = Recorded(release, name)
    outcome = SlurmAdmin(executor).run(command, as_user=executor.user)
    assert outcome.argv == command.argv
    assert list(executor.ran) == [Ran(command.argv, executor.user)]
    return executor


def updated() -> tuple[ReservationValues, ReservationValues]:
    before = ReservationValues.of(LISTED[0])
    after = before.model_copy(
        update={"end": datetime(YEAR, 1, 5, 11, tzinfo=UTC), "users": ("carol", "dave"),
                "flags": ("MAINT",)}
    )  # fmt: skip
    return before, after


@pytest.mark.parametrize("release", RELEASES)
def test_carol_creates_updates_and_deletes(release: str) -> None:
    created = run(release, "scontrol_reservation_create", ar.reservation_create(MAINT))
    assert created.stdout == "Reservation created: rec_resv_maint\n"
    run(release, "scontrol_reservation_create_other", ar.reservation_create(OTHER))
    before, after = updated()
    update = ar.reservation_update("rec_resv_maint", before, after)
    assert update is not None
    assert run(release, "scontrol_reservation_update", update).stdout == "Reservation updated.\n"
    run(release, "scontrol_reservation_delete", ar.reservation_delete("rec_resv_maint"))
    run(release, "scontrol_reservation_delete_other", ar.reservation_delete("rec_resv_users"))


@pytest.mark.parametrize("release", RELEASES)
def test_alice_gets_slurms_refusal(release: str) -> None:
    alice = MAINT.model_copy(update={"users": ("alice",)})
    with pytest.raises(SlurmPermissionDenied, match="Invalid user id"):
        run(release, "scontrol_reservation_create_others", ar.reservation_create(alice))
    with pytest.raises(SlurmPermissionDenied, match="Invalid user id"):
        run(release, "scontrol_reservation_delete_others", ar.reservation_delete("rec_resv_maint"))
    before = ReservationValues.of(LISTED[0])
    later = before.model_copy(update={"end": datetime(YEAR, 1, 5, 11, tzinfo=UTC)})
    update = ar.reservation_update("rec_resv_maint", before, later)
    assert update is not None
    with pytest.raises(SlurmPermissionDenied, match="Invalid user id"):
        run(release, "scontrol_reservation_update_others", update)


@pytest.mark.parametrize("release", RELEASES)
def test_other_refusals_are_invalid_requests(release: str) -> None:
    with pytest.raises(SlurmInvalidRequest, match="Duplicate reservation name"):
        run(release, "scontrol_reservation_create_existing", ar.reservation_create(MAINT))
    nosuch = ReservationSpec(
        name="rec_resv_nosuch", start=MAINT.start, duration_minutes=60, nodes="nosuch007",
        users=["carol"],
    )  # fmt: skip
    with pytest.raises(SlurmInvalidRequest, match="Invalid node name"):
        run(release, "scontrol_reservation_create_unknown_node", ar.reservation_create(nosuch))
    with pytest.raises(SlurmInvalidRequest, match="Requested reservation is invalid"):
        run(release, "scontrol_reservation_delete_unknown", ar.reservation_delete("rec_resv_maint"))


@pytest.mark.parametrize("release", RELEASES)
def test_the_text_listing_reads_the_same_in_every_release(release: str) -> None:
    assert (
        ar.parse_reservations_text(stdout_of(release, "scontrol_show_reservation_text")) == LISTED
    )
    assert ar.parse_reservations_text(stdout_of(release, "scontrol_show_reservation_none")) == []
    (shown,) = ar.parse_reservations_text(stdout_of(release, "scontrol_show_reservation_updated"))
    _, after = updated()
    assert ReservationValues.of(shown) == after  # what the update asked, read back
    assert shown.maintenance and shown.flags == ("MAINT", "SPEC_NODES")


@pytest.mark.parametrize("release", ["24.11", "26.05"])
def test_the_json_listing_equals_the_text_one(release: str) -> None:
    fmt = JSON_FORMAT[release]
    executor = Recorded(release, "scontrol_show_reservation_json")
    assert executor.line == f"scontrol --json={fmt} show reservation"
    assert ar.parse_reservations_json(executor.stdout.encode(), fmt) == LISTED
    cluster = SlurmCluster(release=SlurmRelease.parse(f"slurm {release}.1"), data_format=fmt)
    assert ar.show_args(cluster) == [f"--json={fmt}", "show", "reservation"]
    with pytest.raises(SlurmOutputUnreadable, match=r"asked for JSON format v0\.0\.40"):
        ar.parse_reservations_json(executor.stdout.encode(), "v0.0.40")


def test_2205_has_no_json_and_reads_text() -> None:
    assert (
        "unrecognized option '--json'" in Recorded("22.05", "scontrol_show_reservation_json").stderr
    )
    cluster = SlurmCluster(release=SlurmRelease.parse("slurm 22.05.8"), data_format="v0.0.38")
    assert ar.show_args(cluster) == ["-o", "show", "reservation"]


def test_a_reshaped_output_is_unreadable_not_empty() -> None:
    raw = stdout_of("26.05", "scontrol_show_reservation_json")
    with pytest.raises(SlurmOutputUnreadable, match="start_time"):
        ar.parse_reservations_json(raw.replace(b'"start_time"', b'"begin_time"'), "v0.0.45")
    text = stdout_of("22.05", "scontrol_show_reservation_text")
    with pytest.raises(SlurmOutputUnreadable, match="EndTime"):
        ar.parse_reservations_text(text.replace(b"EndTime=", b"Ending="))
    with pytest.raises(SlurmOutputUnreadable):
        ar.parse_reservations_text(text.replace(b"2027-01-05T08:00:00", b"Jan 5 08:00"))


def test_updates_clear_lists_and_flags_explicitly() -> None:
    before = ReservationValues.of(LISTED[1]).model_copy(update={"users": ("alice",)})
    after = before.model_copy(update={"accounts": (), "flags": ("MAINT",)})
    command = ar.reservation_update("rec_resv_users", before, after)
    assert command is not None
    assert command.args[2:] == ("Accounts=-physics,-research", "Flags=MAINT")
    assert ar.reservation_update("rec_resv_users", before, before) is None
    with pytest.raises(ValueError, match="at least one user or account"):
        ar.reservation_update("x", before, before.model_copy(update={"users": (), "accounts": ()}))


@pytest.mark.parametrize(
    "values",
    [
        {"duration_minutes": 60, "nodes": "node001"},  # nobody
        {"users": ["carol"], "nodes": "node001"},  # no end
        {"users": ["carol"], "duration_minutes": 60},  # no nodes
        {"users": ["carol"], "duration_minutes": 60, "nodes": "node001", "node_count": 1},
        {"users": ["carol"], "duration_minutes": 60, "nodes": "-x"},
        {"users": ["carol Flags=X"], "duration_minutes": 60, "nodes": "node001"},
        {"users": ["carol"], "duration_minutes": 60, "nodes": "node001", "flags": ["NOSUCH"]},
        {"users": ["carol"], "duration_minutes": 0, "nodes": "node001"},
        {
            "users": ["carol"],
            "duration_minutes": 5,
            "nodes": "node001",
            "start": "9999-12-31T23:00:00",
        },
    ],
)
def test_bad_specs_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ReservationSpec(name="t", **values)
    with pytest.raises(ValueError):
        ReservationSpec(name="-t", users=["carol"], duration_minutes=60, nodes="node001")


def test_the_helper_allows_exactly_these_forms() -> None:
    before, after = updated()
    built = [
        ar.reservation_create(MAINT),
        ar.reservation_create(OTHER),
        ar.reservation_create(MAINT.model_copy(update={"start": None})),  # StartTime=now
        ar.reservation_update("rec_resv_maint", before, after),
        ar.reservation_update("rec_resv_maint", after, before),
        ar.reservation_delete("rec_resv_maint"),
    ]
    for command in built:
        assert command is not None
        assert check_slurm_argv(list(command.argv)) == list(command.argv)
    refused = [
        ["scontrol", "create", "reservation", "ReservationName=x", "Users=carol", "Duration=5"],
        ["scontrol", "create", "reservation", "ReservationName=x", "StartTime=now", "TRES=cpu=1"],
        ["scontrol", "update", "ReservationName=x", "Users=a", "Users=b"],
        ["scontrol", "update", "ReservationName=x", "Flags=MAINT,SPEC_NODES"],
        ["scontrol", "update", "ReservationName=x", "StartTime=tomorrow"],
        ["scontrol", "update", "ReservationName=-x", "Duration=5"],
        ["scontrol", "update", "ReservationName=x"],
        ["scontrol", "delete", "ReservationName=x", "Nodes=node001"],
        ["scontrol", "delete", "NodeName=node001"],
        ["scontrol", "create", "partition", "PartitionName=x"],
        ["scontrol", "update", "ReservationName=x", "Users=carol;id"],
    ]
    for argv in refused:
        with pytest.raises(Refused):
            check_slurm_argv(argv)
