import json
from datetime import UTC, datetime

import msgspec
import pytest

from hpcportal.slurm import parse, wire
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus, NodeStatus
from tests.unit.slurm_fixtures import recorded


@pytest.fixture(scope="module")
def jobs() -> dict[str, Job]:
    return {j.id: j for j in parse.parse_squeue(recorded("squeue.json"))}


def test_squeue_jobs_become_typed_models(jobs: dict[str, Job]) -> None:
    train = jobs["6"]
    assert train.name == "train"
    assert train.user == "alice" and train.account == "research"
    assert train.status is JobStatus.RUNNING
    assert train.cpus == 2 and train.memory_mb == 1000
    assert train.time_limit_minutes == 30
    assert train.nodes == "node001"
    assert train.start_time is not None and train.start_time.tzinfo is UTC
    assert train.private is not None
    assert train.private.stdout == "/home/alice/train-%j.out"


def test_array_tasks_and_pending_record(jobs: dict[str, Job]) -> None:
    task = jobs["2_3"]
    assert task.array is not None and task.array.job_id == 2 and task.array.task_id == 3
    assert task.gpus == 1
    pending = jobs["7_[0-5%2]"]
    assert pending.array is not None
    assert pending.array.task_id is None
    assert pending.array.pending_tasks == "0-5%2"
    assert pending.array.max_running == 2
    assert pending.status is JobStatus.QUEUED and pending.reason == "Resources"


def test_held_failed_and_exit_codes(jobs: dict[str, Job]) -> None:
    assert jobs["3"].status is JobStatus.QUEUED_HELD
    failed = jobs["9"]
    assert failed.status is JobStatus.FAILED
    assert failed.exit_code == 3 and failed.signal is None
    assert failed.reason == "NonZeroExitCode"


def test_nodes_with_gpus_drain_and_down() -> None:
    nodes = {n.name: n for n in parse.parse_sinfo(recorded("sinfo_degraded.json"))}
    assert list(nodes) == sorted(nodes)
    gpu = nodes["gpu001"]
    assert gpu.gpus_total == 2 and gpu.gpus_allocated == 1
    assert gpu.partitions == ["gpu"]
    assert nodes["node004"].status is NodeStatus.DRAINED
    assert nodes["node004"].reason == "disk replacement"
    assert nodes["node003"].status is NodeStatus.DOWN
    assert nodes["node002"].status is NodeStatus.IDLE
    assert nodes["node001"].cpus_total == 4 and nodes["node001"].memory_total_mb == 4000


def test_partitions_from_scontrol_oneliner() -> None:
    parts = {p.name: p for p in parse.parse_partitions(recorded("scontrol_partitions.txt"))}
    assert set(parts) == {"normal", "gpu", "viz"}
    assert parts["normal"].is_default and not parts["gpu"].is_default
    assert parts["normal"].total_cpus == 16 and parts["normal"].total_nodes == 4
    assert parts["normal"].max_time_minutes is None
    assert parts["gpu"].tres["gres/gpu"] == "2"
    assert parts["normal"].allow_accounts is None


def test_qos_associations_and_fairshare() -> None:
    qos = {q.name: q for q in parse.parse_qos(recorded("sacctmgr_qos.txt"))}
    assert qos["high"].priority == 100 and qos["normal"].priority == 0
    assoc = parse.parse_associations(recorded("sacctmgr_assoc.txt"))
    alice = next(a for a in assoc if a.user == "alice")
    assert alice.account == "research" and set(alice.qos) == {"normal", "high"}
    research = next(a for a in assoc if a.account == "research" and a.user is None)
    assert research.parent == "root"
    shares = parse.parse_sshare(recorded("sshare.txt"))
    assert any(s.account == "physics" and s.user == "dave" for s in shares)
    assert all(s.account == s.account.strip() for s in shares)


def test_sacct_records_with_array_bitmap() -> None:
    records = {r.id: r for r in parse.parse_sacct(recorded("sacct.json"))}
    assert records["1"].status is JobStatus.COMPLETED
    assert records["1"].elapsed_seconds == 20
    assert records["1"].tres_allocated["cpu"] == 1
    assert "7_[0-5]" in records
    assert records["2_3"].tres_allocated["gres/gpu"] == 1


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("UNLIMITED", None),
        ("NONE", None),
        ("30", 30),
        ("30:00", 30),
        ("1:00:00", 60),
        ("1-00:00:00", 1440),
        ("2-12", 2 * 1440 + 12 * 60),
        ("00:00:30", 1),
    ],
)
def test_time_minutes(value: str, minutes: int | None) -> None:
    assert parse.time_minutes(value) == minutes


def test_value_helpers() -> None:
    assert parse.memory_mb("4G") == 4096 and parse.memory_mb("500M") == 500
    assert parse.memory_mb("bogus") is None
    assert parse.gpus_in_gres("gpu:a100:4(S:0-1),gpu:v100:2") == 6
    assert parse.gpus_in_gres("gpu:2(IDX:0,1)") == 2
    assert parse.gpus_in_tres({"gres/gpu": "2", "gres/gpu:a100": "2"}) == 2
    assert parse.bitmap_to_ranges("0x2D") == "0,2-3,5"
    assert parse.num(wire.NoVal(set=True, infinite=False, number=5)) == 5
    # Every key of a NoVal is required: no other object can pass for a number.
    assert parse.num(wire.NoVal(set=False, infinite=False, number=0)) is None
    assert parse.num(wire.NoVal(set=True, infinite=True, number=0)) is None
    assert parse.timestamp(0) is None
    assert parse.timestamp(1_700_000_000) == datetime.fromtimestamp(1_700_000_000, UTC)


def test_newer_slurm_number_objects_and_state_lists_decode() -> None:
    # Slurm 24.11 (data_parser v0.0.42): states are lists, numbers NoVal objects.
    jobs = {j.name: j for j in parse.parse_squeue(recorded("24.11/squeue.v0.0.42.json"))}
    job = jobs["rec-running"]
    assert job.status is JobStatus.RUNNING and job.time_limit_minutes is None and job.cpus == 2


def test_malformed_output_is_rejected_not_guessed() -> None:
    with pytest.raises(msgspec.ValidationError):
        parse.parse_squeue(b'{"jobs": [{"job_id": "not-a-number"}]}')


def test_job_parser_reuses_unchanged_jobs_and_rebuilds_changed_ones() -> None:
    raw = recorded("squeue.json")
    parser = parse.JobParser()
    first = {j.job_id: j for j in parser.parse(raw)}
    assert parser.built == len(first) and parser.reused == 0
    changed = raw.replace(b'"name": "train"', b'"name": "train-2"')
    assert changed != raw
    second = {j.job_id: j for j in parser.parse(changed)}
    assert parser.built == 1 and parser.reused == len(first) - 1
    assert second[6].name == "train-2" and second[6] is not first[6]
    assert all(second[k] is first[k] for k in first if k != 6)
    assert second == {j.job_id: j for j in parse.parse_squeue(changed)}


def test_nulls_where_slurm_usually_prints_strings_are_tolerated() -> None:
    sacct = json.loads(recorded("22.05/sacct.json"))
    sacct["jobs"] = [sacct["jobs"][0] | {"qos": None, "partition": None, "working_directory": None}]
    (record,) = parse.parse_sacct(json.dumps(sacct).encode())
    assert record.qos is None and record.partition is None and record.work_dir is None
    assert record.status is JobStatus.COMPLETED
    sinfo = json.loads(recorded("22.05/sinfo.json"))
    sinfo["nodes"] = [sinfo["nodes"][3] | {"partitions": None}]  # node003, idle
    (node,) = parse.parse_sinfo(json.dumps(sinfo).encode())
    assert node.partitions == [] and node.status is NodeStatus.IDLE
