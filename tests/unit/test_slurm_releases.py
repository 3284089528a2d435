"""Every recorded output of Slurm 22.05, 24.11 and 26.05, in every JSON format each
release offers, decoded by the strict structs into the same models.

The recordings (``tests/fixtures/slurm/RELEASE/``, see their READMEs) hold the same
eight jobs in each release: completed, failed with exit code 3, cancelled, running
(2 CPUs, 1000 MB), held, an array of three, one pending on resources, and a GPU job.
24.11 and 26.05 leave finished jobs out of ``squeue`` and every release leaves the
held job out of ``sacct``, so each check covers the jobs its file holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hpcportal.errors import SlurmUnsupported
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.job_output import output_path
from hpcportal.services.jobs import JobDetail
from hpcportal.slurm import formats, hostlist, parse, wire
from hpcportal.slurm.models import AccountingRecord, Job, Node
from hpcportal.slurm.states import JobStatus, NodeStatus
from tests.unit.slurm_fixtures import FIXTURES

RELEASES = {"22.05": "v0.0.38", "24.11": "v0.0.42", "26.05": "v0.0.45"}  # and the default


def outputs(command: str) -> list[tuple[str, str | None, Path]]:
    """(release, format named in the file name or None for the default, path)."""
    found = []
    for release in RELEASES:
        for path in sorted((FIXTURES / release).glob(f"{command}*.json")):
            parts = path.name.removesuffix(".json").split(".", 1)
            found.append((release, parts[1] if len(parts) > 1 else None, path))
    return found


def ids(cases: list[tuple[str, str | None, Path]]) -> list[str]:
    return [f"{release}/{path.name}" for release, _, path in cases]


SQUEUE = outputs("squeue")
SACCT = outputs("sacct")
NODES = [c for c in outputs("scontrol_show_nodes")] + [
    c for c in outputs("sinfo") if c[0] == "22.05"
]


def test_every_format_of_every_release_is_recorded() -> None:
    assert {(r, f) for r, f, _ in SQUEUE} == {
        ("22.05", None),
        *[("24.11", v) for v in (None, "v0.0.40", "v0.0.41", "v0.0.42")],
        *[("26.05", v) for v in (None, "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")],
    }
    assert len(SACCT) == len(SQUEUE) and len(NODES) == len(SQUEUE)


def _by_name(items: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        out.setdefault(item.name, []).append(item)
    return out


def _meta_format(path: Path) -> str | None:
    return formats.format_of_meta(wire.envelope_decoder.decode(path.read_bytes()).meta)


@pytest.mark.parametrize(("release", "named", "path"), SQUEUE, ids=ids(SQUEUE))
def test_squeue_jobs(release: str, named: str | None, path: Path) -> None:
    data_format = named or RELEASES[release]
    assert _meta_format(path) == data_format
    jobs: list[Job] = parse.parse_squeue(path.read_bytes(), data_format)
    assert parse.parse_squeue(path.read_bytes()) == jobs  # the meta block names it too
    by_name = _by_name(jobs)

    (running,) = by_name["rec-running"]
    assert running.status is JobStatus.RUNNING and running.user == "alice"
    assert (running.cpus, running.memory_mb, running.gpus) == (2, 1000, 0)
    assert running.node_names == ["node002"] and running.exit_code == 0
    assert running.start_time is not None and running.submit_time is not None
    assert running.start_time >= running.submit_time and running.end_time is not None
    assert running.time_limit_minutes is None  # the partition's MaxTime is UNLIMITED

    (held,) = by_name["rec-held"]
    assert held.status is JobStatus.QUEUED_HELD and held.reason == "JobHeldUser"
    assert held.user == "dave" and held.node_names == [] and held.start_time is None

    tasks = by_name["rec-array"]
    assert len(tasks) == 3 and all(t.status is JobStatus.RUNNING for t in tasks)
    (parent,) = {t.array.job_id for t in tasks if t.array}
    assert sorted(t.array.task_id for t in tasks if t.array) == [1, 2, 3]  # type: ignore[type-var]
    assert {t.id for t in tasks} == {f"{parent}_{i}" for i in (1, 2, 3)}

    (big,) = by_name["rec-too-big"]
    assert big.status is JobStatus.QUEUED and big.reason == "Resources"
    assert (big.cpus, big.node_count, big.memory_mb) == (16, 4, 8000)

    (gpu,) = by_name["rec-gpu"]
    assert gpu.status is JobStatus.RUNNING and gpu.partition == "gpu"
    assert gpu.gpus == 1 and gpu.node_names == ["gpu001"] and gpu.memory_mb == 500

    if release == "22.05":  # later releases list finished jobs only with --states=all
        (failed,) = by_name["rec-failed"]
        assert failed.status is JobStatus.FAILED and failed.exit_code == 3
        (done,) = by_name["rec-completed"]
        assert done.status is JobStatus.COMPLETED and done.exit_code == 0
        (cancelled,) = by_name["rec-cancelled"]
        assert cancelled.status is JobStatus.CANCELLED and cancelled.signal == 15
    else:
        assert not {"rec-failed", "rec-completed", "rec-cancelled"} & set(by_name)


@pytest.mark.parametrize(("release", "named", "path"), SACCT, ids=ids(SACCT))
def test_sacct_records(release: str, named: str | None, path: Path) -> None:
    data_format = named or RELEASES[release]
    assert _meta_format(path) == data_format
    records: list[AccountingRecord] = parse.parse_sacct(path.read_bytes(), data_format)
    by_name = _by_name(records)
    assert "rec-held" not in by_name  # never eligible, never accounted

    (failed,) = by_name["rec-failed"]
    assert failed.status is JobStatus.FAILED
    # 22.05's sacct --json itself writes return_code 0 for this job (and its batch
    # step): the portal shows what Slurm recorded. From 23.11 the exit code is 3.
    assert failed.exit_code == (0 if release == "22.05" else 3)
    (done,) = by_name["rec-completed"]
    assert done.status is JobStatus.COMPLETED and done.exit_code == 0
    assert done.memory_requested_mb == 500 and done.cpus_requested == 1
    assert done.end_time is not None and done.start_time is not None
    assert by_name["rec-cancelled"][0].status is JobStatus.CANCELLED

    (running,) = by_name["rec-running"]
    assert running.status is JobStatus.RUNNING and running.node_names == ["node002"]
    assert (running.cpus_requested, running.memory_requested_mb) == (2, 1000)
    assert running.tres_allocated["cpu"] == 2 and running.tres_allocated["mem"] == 1000
    assert "energy" not in running.tres_allocated  # 24.11 writes -2: not measured

    (gpu,) = by_name["rec-gpu"]
    assert gpu.tres_allocated["gres/gpu"] == 1 and gpu.partition == "gpu"
    (big,) = by_name["rec-too-big"]
    assert big.status is JobStatus.QUEUED and big.cpus_requested == 16
    tasks = by_name["rec-array"]
    assert sorted(t.array.task_id for t in tasks if t.array) == [1, 2, 3]  # type: ignore[type-var]


@pytest.mark.parametrize(("release", "named", "path"), NODES, ids=ids(NODES))
def test_nodes(release: str, named: str | None, path: Path) -> None:
    data_format = named or RELEASES[release]
    nodes: list[Node] = parse.parse_nodes(path.read_bytes(), data_format)
    by_name = {n.name: n for n in nodes}
    assert sorted(by_name) == ["gpu001", "node001", "node002", "node003", "node004", "viz-node001"]
    for node in nodes:
        assert (node.cpus_total, node.memory_total_mb) == (4, 4000)
        assert node.memory_free_mb is not None and node.memory_free_mb > 0
        assert node.slurmd_version is not None and node.slurmd_version.startswith(release)
        assert 0 <= node.cpus_allocated + node.cpus_idle <= node.cpus_total
    gpu = by_name["gpu001"]
    assert gpu.gpus_total == 2 and gpu.partitions == ["gpu"]
    # rec-running (2 CPUs) and two array tasks run on node002 in every recording.
    busy = by_name["node002"]
    assert busy.cpus_allocated >= 3 and busy.cpus_idle == 4 - busy.cpus_allocated
    assert busy.status in (NodeStatus.MIXED, NodeStatus.ALLOCATED)
    assert by_name["node004"].status is NodeStatus.IDLE and by_name["node004"].cpus_idle == 4


@pytest.mark.parametrize("release", ["24.11", "26.05"])
def test_every_format_of_a_release_gives_the_same_models(release: str) -> None:
    """v0.0.40 to v0.0.45 differ in shape, never in what the portal reads from them."""

    def view(path: Path) -> set[tuple[object, ...]]:
        return {
            (j.name, j.status, j.cpus, j.memory_mb, j.gpus, j.exit_code, tuple(j.node_names))
            for j in parse.parse_squeue(path.read_bytes())
        }

    views = [view(p) for r, _, p in SQUEUE if r == release]
    assert len(views) >= 4 and all(v == views[0] for v in views)


# --- a shape the portal does not know fails loudly, never reads as 0 ---------------


def _edited(name: str, edit: Any) -> bytes:
    data = json.loads((FIXTURES / name).read_bytes())
    edit(data)
    return json.dumps(data).encode()


def _first_job(key: str, value: object) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["jobs"][0][key] = value

    return edit


@pytest.mark.parametrize(
    ("name", "key", "value", "where"),
    [
        ("24.11/squeue.v0.0.42.json", "exit_code", "3", "exit_code"),
        ("24.11/squeue.v0.0.42.json", "exit_code", 3, "exit_code"),
        ("22.05/squeue.json", "exit_code", {"status": ["ERROR"], "return_code": 3}, "exit_code"),
        ("22.05/squeue.json", "cpus", {"set": True, "infinite": False, "number": 2}, "cpus"),
        ("24.11/squeue.v0.0.42.json", "cpus", {"count": 2}, "cpus"),
        ("24.11/squeue.v0.0.42.json", "cpus", 2, "cpus"),
        ("26.05/sacct.v0.0.45.json", "exit_code", {"status": "ERROR", "return_code": 3}, "status"),
    ],
)
def test_changed_shapes_are_refused(name: str, key: str, value: object, where: str) -> None:
    raw = _edited(name, _first_job(key, value))
    parser = parse.parse_sacct if "sacct" in name else parse.parse_squeue
    with pytest.raises(msgspec.ValidationError, match=where):
        parser(raw)


def test_renamed_fields_are_refused_not_read_as_zero() -> None:
    def rename(old: str, new: str) -> Any:
        def edit(data: dict[str, Any]) -> None:
            for node in data["nodes"]:
                node[new] = node.pop(old)

        return edit

    # 22.05's names in a 24.11 document, and the other way round.
    raw = _edited("24.11/scontrol_show_nodes.v0.0.42.json", rename("alloc_idle_cpus", "idle_cpus"))
    with pytest.raises(msgspec.ValidationError, match="alloc_idle_cpus"):
        parse.parse_nodes(raw)
    raw = _edited("22.05/sinfo.json", rename("free_memory", "free_mem"))
    with pytest.raises(msgspec.ValidationError, match="free_memory"):
        parse.parse_nodes(raw)

    def memory_renamed(data: dict[str, Any]) -> None:
        data["jobs"][0]["required"]["memory"] = data["jobs"][0]["required"].pop("memory_per_node")

    with pytest.raises(msgspec.ValidationError, match="memory_per_node"):
        parse.parse_sacct(_edited("24.11/sacct.v0.0.42.json", memory_renamed))


def test_a_number_object_must_be_exactly_set_infinite_number() -> None:
    for value in (
        {"set": True, "number": 2},
        {"set": True, "infinite": False, "number": 2, "x": 1},
    ):
        raw = _edited("24.11/squeue.v0.0.42.json", _first_job("cpus", value))
        with pytest.raises(msgspec.ValidationError, match="cpus"):
            parse.parse_squeue(raw)


def test_format_asked_for_must_be_the_format_printed() -> None:
    raw = (FIXTURES / "24.11/squeue.v0.0.40.json").read_bytes()
    expected = r"asked for JSON format v0\.0\.42, got v0\.0\.40"
    with pytest.raises(msgspec.ValidationError, match=expected):
        parse.parse_squeue(raw, "v0.0.42")

    def newer(data: dict[str, Any]) -> None:
        data["meta"]["plugin"]["data_parser"] = "data_parser/v0.0.46"

    with pytest.raises(msgspec.ValidationError, match=r"v0\.0\.46 is not one the portal reads"):
        parse.parse_squeue(_edited("26.05/squeue.v0.0.45.json", newer))


def test_v0039_decodes_a_document_shaped_by_the_published_description() -> None:
    """No 23.02 recording exists: this job follows the v0.0.39 OpenAPI description
    (22.05's record with v0.0.39's NoVal numbers), to exercise that family's path."""

    def as_v0039(data: dict[str, Any]) -> None:
        data["meta"] = {
            "plugin": {"type": "openapi/v0.0.39", "name": "", "data_parser": "v0.0.39"},
            "Slurm": {"version": {"major": 23, "minor": 2, "micro": 7}, "release": "23.02.7"},
        }
        for job in data["jobs"]:
            for key in (
                "priority", "array_job_id", "array_task_id", "array_max_tasks", "node_count",
                "cpus", "tasks", "memory_per_node", "memory_per_cpu", "time_limit",
            ):  # fmt: skip
                value = job[key]
                job[key] = {"set": value is not None, "infinite": False, "number": value or 0}

    raw = _edited("22.05/squeue.json", as_v0039)
    assert _meta_format_bytes(raw) == "v0.0.39"
    jobs = {j.name: j for j in parse.parse_squeue(raw, "v0.0.39")}
    assert jobs["rec-failed"].exit_code == 3 and jobs["rec-running"].memory_mb == 1000
    assert jobs["rec-running"].cpus == 2 and jobs["rec-running"].time_limit_minutes is None


def _meta_format_bytes(raw: bytes) -> str | None:
    return formats.format_of_meta(wire.envelope_decoder.decode(raw).meta)


# --- choosing the format -------------------------------------------------------------


def test_release_versions_are_read_from_scontrol_version() -> None:
    assert formats.SlurmRelease.parse("slurm-wlm 24.11.5\n") == formats.SlurmRelease(24, 11, 5)
    assert str(formats.SlurmRelease.parse("slurm 23.02.7")) == "23.02.7"
    assert formats.SlurmRelease.parse("slurm 26.05.0") > formats.SlurmRelease(24, 11, 5)
    with pytest.raises(SlurmUnsupported):
        formats.SlurmRelease.parse("scontrol: command not found")


def test_the_newest_format_both_sides_read_is_chosen() -> None:
    release = formats.SlurmRelease.parse
    listed = (FIXTURES / "24.11/data_parsers.txt").read_text()
    assert formats.choose_format(release("24.11.5"), listed.split()) == "v0.0.42"
    listed = (FIXTURES / "26.05/data_parsers.txt").read_text()
    assert formats.choose_format(release("26.05.5"), listed.split()) == "v0.0.45"
    # A newer Slurm that still offers a format the portal reads keeps working...
    offered = ["v0.0.44", "v0.0.45", "v0.0.46", "v0.0.47"]
    assert formats.choose_format(release("27.11.0"), offered) == "v0.0.45"
    # ...one that does not is a clear error, not a guess.
    with pytest.raises(SlurmUnsupported, match=r"offers the JSON formats v0\.0\.46, v0\.0\.47"):
        formats.choose_format(release("28.05.0"), ["v0.0.46", "v0.0.47"])
    with pytest.raises(SlurmUnsupported, match="older than the portal supports"):
        formats.choose_format(release("21.08.8"))
    assert formats.choose_format(release("22.05.8")) == "v0.0.38"
    assert formats.choose_format(release("23.02.7")) == "v0.0.39"
    assert formats.json_flag(release("22.05.8"), "v0.0.38") == "--json"
    assert formats.json_flag(release("24.11.5"), "v0.0.42") == "--json=v0.0.42"


def test_json_list_output_and_the_three_meta_spellings() -> None:
    text = "Possible data_parser plugins:\ndata_parser/v0.0.42\ndata_parser/v0.0.40\n"
    assert formats.offered_formats(text) == ["v0.0.42", "v0.0.40"]
    for release, expected in (("22.05", "v0.0.38"), ("24.11", "v0.0.42"), ("26.05", "v0.0.45")):
        meta = wire.envelope_decoder.decode((FIXTURES / release / "squeue.json").read_bytes()).meta
        assert formats.format_of_meta(meta) == expected
        assert (formats.release_of_meta(meta) or "").startswith(release)
    sacct_2205 = wire.envelope_decoder.decode((FIXTURES / "22.05/sacct.json").read_bytes()).meta
    assert formats.format_of_meta(sacct_2205) == "v0.0.38"  # openapi/dbv0.0.38
    meta_2302 = msgspec.json.decode(
        b'{"meta": {"plugin": {"type": "openapi/v0.0.39", "data_parser": "v0.0.39"},'
        b' "Slurm": {"version": {"major": "23", "minor": "02", "micro": "7"},'
        b' "release": "23.02.7"}}}',
        type=wire.Envelope,
    ).meta
    assert formats.format_of_meta(meta_2302) == "v0.0.39"
    assert formats.release_of_meta(meta_2302) == "23.02.7"


# --- host lists ------------------------------------------------------------------------


def test_host_lists_expand_inside_the_boundary() -> None:
    assert hostlist.expand("rack[1-2]-node[01-02]") == [
        "rack1-node01",
        "rack1-node02",
        "rack2-node01",
        "rack2-node02",
    ]
    assert hostlist.expand("node[1-2]-ib") == ["node1-ib", "node2-ib"]
    assert hostlist.expand("node[001-003,007],gpu001") == [
        "node001",
        "node002",
        "node003",
        "node007",
        "gpu001",
    ]
    assert hostlist.expand(None) == [] and hostlist.expand("(null)") == []
    assert hostlist.expand("node[1-99999999]") == ["node[1-99999999]"]  # not guessed at
    (partition, *_) = parse.parse_partitions(
        b"PartitionName=p Nodes=rack[1-2]-node[01-02] State=UP"
    )
    assert partition.node_names == hostlist.expand("rack[1-2]-node[01-02]")


def test_output_patterns_name_the_first_node_of_a_host_list() -> None:
    """``%N`` is the first node Slurm allocated, never a fragment of the host list."""
    raw = (FIXTURES / "24.11/squeue.v0.0.42.json").read_bytes()
    running = next(j for j in parse.parse_squeue(raw) if j.name == "rec-running")
    assert running.private is not None
    spec = "rack[1-2]-node[01,03]"
    job = running.model_copy(
        update={
            "batch_host": None,
            "nodes": spec,
            "node_names": hostlist.expand(spec),
            "private": running.private.model_copy(update={"stdout": "/tmp/%N-%j.out"}),
        }
    )
    meta = SnapshotMeta(taken_at=None, age_seconds=None, stale=False)
    detail = JobDetail(job=job, source="snapshot", snapshot=meta)
    assert output_path(detail, "stdout") == f"/tmp/rack1-node01-{job.job_id}.out"


def test_sacct_none_assigned_is_no_node() -> None:
    """sacct names the nodes of a job that never ran "None assigned": no node."""
    from hpcportal.slurm.parse.values import text

    assert text("None assigned") is None and text("node001") == "node001"
