import pytest

from hpcportal.errors import InvalidInput
from hpcportal.services.cluster import SnapshotMeta, summarize
from hpcportal.services.identity import Principal
from hpcportal.services.jobs import (
    JobQuery,
    count_indices,
    list_jobs,
    parse_states,
    validate_job_id,
)
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotHealth
from hpcportal.slurm import parse
from hpcportal.slurm.states import JobStatus
from tests.unit.slurm_fixtures import recorded

ALICE = Principal("alice", 1001, 1001, ("research",), "user")
BOB = Principal("bob", 1002, 1001, ("research",), "user")
CAROL = Principal("carol", 1004, 1003, ("hpc-admins",), "admin")
META = SnapshotMeta(taken_at=None, age_seconds=0.0, stale=False)


@pytest.fixture(scope="module")
def snap() -> ClusterSnapshot:
    return ClusterSnapshot.build(
        1,
        0.1,
        parse.parse_squeue(recorded("squeue.json")),
        parse.parse_sinfo(recorded("sinfo.json")),
        parse.parse_partitions(recorded("scontrol_partitions.txt")),
    )


def ids(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [j.id for j in page.items]


def test_default_listing_is_every_job_sorted_by_id(snap: ClusterSnapshot) -> None:
    page = list_jobs(snap, JobQuery(), ALICE, META)
    assert page.total == len(snap.jobs) == 10
    assert ids(page) == ["1", "2_1", "2_2", "2_3", "3", "6", "7_[0-5%2]", "8", "9", "10"]


def test_filters_combine(snap: ClusterSnapshot) -> None:
    page = list_jobs(snap, JobQuery(user=["alice"], state=["running"]), ALICE, META)
    assert ids(page) == ["6", "10"]
    page = list_jobs(snap, JobQuery(state=["PENDING"], partition=["normal"]), ALICE, META)
    assert ids(page) == ["3", "8"]
    page = list_jobs(snap, JobQuery(name="TRA"), ALICE, META)
    assert ids(page) == ["6"]
    page = list_jobs(snap, JobQuery(account=["physics"]), ALICE, META)
    assert {j.user for j in page.items} == {"dave"}


def test_sort_and_pages(snap: ClusterSnapshot) -> None:
    page = list_jobs(snap, JobQuery(sort="-id", limit=3, page=2), ALICE, META)
    assert page.total == 10 and ids(page) == ["7_[0-5%2]", "6", "3"]
    empty = list_jobs(snap, JobQuery(page=99), ALICE, META)
    assert empty.items == [] and empty.total == 10


def test_collapsed_arrays_are_one_row_with_task_counts(snap: ClusterSnapshot) -> None:
    page = list_jobs(snap, JobQuery(arrays="collapsed"), BOB, META)
    rows = {j.id: j for j in page.items}
    assert "2" in rows and "7" in rows and "2_1" not in rows
    assert page.array_summaries == {"2": {"completed": 2, "running": 1}, "7": {"queued": 6}}
    assert page.total == 8  # six plain jobs and two arrays


def test_private_fields_only_for_owner_and_admin(snap: ClusterSnapshot) -> None:
    def private_of(who: Principal) -> dict[str, object]:
        page = list_jobs(snap, JobQuery(user=["alice"]), who, META)
        return {j.id: j.private for j in page.items}

    assert all(p is not None for p in private_of(ALICE).values())
    assert all(p is None for p in private_of(BOB).values())
    assert all(p is not None for p in private_of(CAROL).values())
    # The snapshot itself is never modified by hiding.
    assert snap.jobs_by_id["6"].private is not None


def test_unknown_state_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="Unknown job state 'sleeping'"):
        parse_states(["sleeping"])
    assert parse_states(["running", "pending"]) == {JobStatus.RUNNING, "PENDING"}


@pytest.mark.parametrize("bad", ["abc", "1;rm", "12_", "../1", ""])
def test_job_ids_are_validated(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_job_id(bad)


def test_count_indices() -> None:
    assert count_indices("0-5%2") == 6
    assert count_indices("1,3,5-9:2") == 5


def test_summary_counts(snap: ClusterSnapshot) -> None:
    health = SnapshotHealth(None, 0.0, False, None, 1)
    summary = summarize(snap, health)
    assert summary.nodes_total == 6
    assert summary.cpus.total == 24
    assert summary.gpus.total == 2 and summary.gpus.allocated == 1
    assert summary.jobs_by_status["running"] == 3
    loads = {p.partition.name: p for p in summary.partitions}
    assert loads["gpu"].jobs_running == 1 and loads["gpu"].jobs_pending == 1
    assert loads["normal"].cpus.total == 16
