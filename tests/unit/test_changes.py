"""The differences between two snapshots, on Slurm output recorded from the dev cluster
and on modified copies of it."""

from __future__ import annotations

import json
from typing import Any

from hpcportal.services.changes import compute_changes
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.slurm import parse
from tests.unit.slurm_fixtures import recorded


def raw(name: str) -> dict[str, Any]:
    return dict(json.loads(recorded(name)))


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def snapshot(
    generation: int, parser: parse.JobParser, squeue: dict[str, Any], sinfo: dict[str, Any]
) -> ClusterSnapshot:
    return ClusterSnapshot.build(
        generation,
        0.1,
        parser.parse(encode(squeue)),
        parse.parse_sinfo(encode(sinfo)),
        parse.parse_partitions(recorded("scontrol_partitions.txt")),
    )


def job_record(squeue: dict[str, Any], job_id: int) -> dict[str, Any]:
    return next(j for j in squeue["jobs"] if j["job_id"] == job_id)


def test_same_output_twice_changes_nothing_and_reuses_every_job() -> None:
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    second = snapshot(2, parser, squeue, sinfo)
    # The parser handed back the very same objects: the diff is one `is` per job.
    assert all(a is b for a, b in zip(first.jobs, second.jobs, strict=True))
    changes = compute_changes(first, second)
    assert changes.empty
    assert (changes.previous_generation, changes.generation) == (1, 2)


def test_a_state_change_is_exactly_one_changed_job() -> None:
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    record = job_record(squeue, 6)
    record["job_state"] = "COMPLETED"
    record["exit_code"] = 0
    second = snapshot(2, parser, squeue, sinfo)
    changes = compute_changes(first, second)
    assert [j.id for j in changes.jobs_changed] == ["6"]
    assert changes.jobs_changed[0].state == "COMPLETED"
    assert changes.jobs_removed == ()
    # Running counts changed, so the cluster summary did; nodes did not.
    assert changes.cluster_changed
    assert not changes.nodes
    assert not changes.partitions_changed


def test_equal_but_rebuilt_jobs_are_not_changes() -> None:
    """Without the parser's reuse (a fresh parser), equal jobs compare equal."""
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parse.JobParser(), squeue, sinfo)
    second = snapshot(2, parse.JobParser(), squeue, sinfo)
    assert all(a is not b for a, b in zip(first.jobs, second.jobs, strict=True))
    assert compute_changes(first, second).empty


def test_added_and_removed_jobs() -> None:
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    later = json.loads(json.dumps(squeue))
    later["jobs"] = [j for j in later["jobs"] if j["job_id"] not in (1, 9)]
    new = dict(job_record(squeue, 8), job_id=11, name="fresh")
    later["jobs"].append(new)
    second = snapshot(2, parser, later, sinfo)
    changes = compute_changes(first, second)
    assert [j.id for j in changes.jobs_changed] == ["11"]
    assert sorted(changes.jobs_removed) == ["1", "9"]
    assert changes.cluster_changed  # fewer jobs in total


def test_array_record_renamed_when_a_task_starts() -> None:
    """A pending array's record is named by its pending tasks: when one starts, the
    old name is removed and the new record and the running task are added."""
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    pending = next(j for j in first.jobs if j.id.startswith("7_["))
    later = json.loads(json.dumps(squeue))
    record = next(j for j in later["jobs"] if j["array_task_string"])
    record["array_task_string"] = "1-5%2"
    started = dict(record, job_id=99, array_task_id=0, array_task_string="", job_state="RUNNING")
    later["jobs"].append(started)
    changes = compute_changes(first, snapshot(2, parser, later, sinfo))
    assert changes.jobs_removed == (pending.id,)
    assert sorted(j.id for j in changes.jobs_changed) == ["7_0", "7_[1-5%2]"]


def test_node_changes_and_removals() -> None:
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    later = json.loads(json.dumps(sinfo))
    node = next(n for n in later["nodes"] if n["name"] == "node002")
    node["cpu_load"] = 350  # load only: a node change, not a summary change
    later["nodes"] = [n for n in later["nodes"] if n["name"] != "node004"]
    changes = compute_changes(first, snapshot(2, parser, squeue, later))
    assert [n.name for n in changes.nodes_changed] == ["node002"]
    assert changes.nodes_removed == ("node004",)
    assert not changes.jobs
    assert changes.cluster_changed  # a node fewer: totals changed


def test_node_load_alone_leaves_the_summary_alone() -> None:
    parser = parse.JobParser()
    squeue, sinfo = raw("squeue.json"), raw("sinfo.json")
    first = snapshot(1, parser, squeue, sinfo)
    later = json.loads(json.dumps(sinfo))
    for node in later["nodes"]:
        node["cpu_load"] = 123
    changes = compute_changes(first, snapshot(2, parser, squeue, later))
    assert len(changes.nodes_changed) == len(first.nodes)
    assert not changes.cluster_changed


def test_first_snapshot_is_all_new() -> None:
    snap = snapshot(1, parse.JobParser(), raw("squeue.json"), raw("sinfo.json"))
    changes = compute_changes(None, snap)
    assert changes.previous_generation is None
    assert changes.jobs_changed == snap.jobs and changes.nodes_changed == snap.nodes
    assert changes.cluster_changed and changes.partitions_changed
