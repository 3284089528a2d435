"""On every release, the read API says what Slurm's own commands say at the same moment.

A mix of jobs that covers what the portal shows differently per release (an array,
a multi-node job, a GPU job, a held job, one that failed with exit code 3, one that
timed out and one cancelled) is submitted as the demo users. Then ``/api/v1/nodes``,
``/jobs`` and ``/accounting/jobs`` are compared field by field with ``sinfo`` /
``scontrol show nodes``, ``squeue`` and ``sacct`` run by the test. The test reads
Slurm's JSON with plain ``json`` and the few rules below (``{set, infinite,
number}`` values, a raw wait status on 22.05), not with the portal's decoders, so a
field the portal misreads on one release shows up as a difference. Known facts about
the mix (exit code 3, TIMEOUT, one GPU, two nodes) are checked too, so both sides
agreeing on a wrong value fails as well.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal

#: Attempts at catching the portal and Slurm at one moment (jobs of other tests or
#: people may change between the two reads; a real difference stays).
ATTEMPTS = 8


@dataclass(frozen=True)
class Mix:
    """The jobs of the mix by role, and when they were submitted."""

    since: datetime
    ids: dict[str, int]


def wait_for_state(conf: str, job_id: int, states: set[str], timeout: float) -> None:
    """Wait until the job (every task of an array) is in one of ``states``; ended states
    too, which plain ``squeue -j`` no longer lists."""
    deadline = time.monotonic() + timeout
    argv = ["squeue", "-h", "--states=all", "-j", str(job_id), "-o", "%T"]
    while True:
        seen = set(slurm_cli.run(conf, argv).split()) or {"gone"}
        if seen <= states:
            return
        assert time.monotonic() < deadline, f"job {job_id} is {seen}, not {states}"
        time.sleep(1)


def in_accounting(conf: str, job_ids: list[int], since: datetime, states: set[str]) -> bool:
    argv = ["sacct", "--json", "-X", "--allusers", "-S", sacct_time(since), "-E", "now"]
    seen = {
        r["job_id"]: base_state(r["state"]["current"])
        for r in slurm_cli.json_of(conf, argv)["jobs"]
    }
    return all(seen.get(j) in states for j in job_ids)


@pytest.fixture(scope="module")
def mix(conf: str) -> Iterator[Mix]:
    """Submit the mix; the 1-minute job goes first so its wait covers the others'."""
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    ids: dict[str, int] = {}
    sb = slurm_cli.sbatch
    try:
        ids["timeout"] = sb(conf, "alice", "-J", "eq-timeout", "-t", "1", "--wrap", "sleep 300")
        ids["array"] = sb(conf, "alice", "-J", "eq-array", "-a", "1-3", "--wrap", "sleep 600")
        ids["multi"] = sb(
            conf, "bob", "-J", "eq-multi", "-N", "2", "-n", "2", "--mem=600", "--wrap", "sleep 600"
        )
        ids["gpu"] = sb(
            conf, "bob", "-J", "eq-gpu", "-p", "gpu", "--gres=gpu:1", "--mem=700",
            "--wrap", "sleep 600",
        )  # fmt: skip
        ids["held"] = sb(conf, "dave", "-J", "eq-held", "-H", "--wrap", "true")
        ids["failed"] = sb(conf, "alice", "-J", "eq-failed", "--wrap", "exit 3")
        ids["cancelled"] = sb(conf, "bob", "-J", "eq-cancelled", "--wrap", "sleep 600")
        for role in ("cancelled", "array", "multi", "gpu"):
            wait_for_state(conf, ids[role], {"RUNNING"}, 90)
        slurm_cli.scancel(conf, ids["cancelled"])
        wait_for_state(conf, ids["failed"], {"FAILED"}, 60)
        wait_for_state(conf, ids["cancelled"], {"CANCELLED"}, 60)
        # Slurm checks limits about every 30 s, then allows KillWait (10 s).
        wait_for_state(conf, ids["timeout"], {"TIMEOUT"}, 180)
        ended = [ids["failed"], ids["cancelled"], ids["timeout"]]
        deadline = time.monotonic() + 60  # slurmdbd records endings asynchronously
        while not in_accounting(conf, ended, since, {"FAILED", "CANCELLED", "TIMEOUT"}):
            assert time.monotonic() < deadline, "the ended jobs never reached accounting"
            time.sleep(1)
        yield Mix(since, ids)
    finally:
        slurm_cli.scancel(conf, *ids.values(), missing_ok=True)


# --- Slurm's JSON, read plainly -------------------------------------------------------


def number(value: Any) -> int | None:
    """A plain number, or ``{"set", "infinite", "number"}`` (23.02 on); None if unset."""
    if isinstance(value, dict):
        return int(value["number"]) if value["set"] and not value["infinite"] else None
    return None if value is None else int(value)


def base_state(value: str | list[str]) -> str:
    return slurm_cli.base_state(value)


def moment(value: Any) -> int | None:
    seconds = number(value)
    return seconds if seconds else None


def api_moment(value: str | None) -> int | None:
    return int(datetime.fromisoformat(value).timestamp()) if value else None


def sacct_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def exit_and_signal(value: Any) -> tuple[int | None, int | None]:
    """22.05's squeue writes the raw wait status; later releases an object."""
    if value is None:
        return None, None
    if isinstance(value, int):
        return (value >> 8) & 0xFF, (value & 0x7F) or None
    return number(value["return_code"]), number(value.get("signal", {}).get("id")) or None


def tres_count(tres: str | None, key: str) -> int:
    match = re.search(rf"(?:^|,){re.escape(key)}=(\d+)", tres or "")
    return int(match.group(1)) if match else 0


def gres_gpus(gres: str | None) -> int:
    """GPUs in a node's ``gpu:2`` / ``gpu:tesla:1(IDX:0)`` gres string."""
    return sum(int(m) for m in re.findall(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)", gres or ""))


def display_id(job_id: int, parent: int | None, task: int | None, spec: str) -> str:
    if not parent:
        return str(job_id)
    if task is None:
        return f"{parent}_[{spec}]" if spec else str(parent)
    return f"{parent}_{task}"


def ranges(bitmap: str | None) -> str:
    """sacct's pending array tasks as a hex bitmap (``"0xE"``) -> ``"1-3"``."""
    if not bitmap:
        return ""
    bits = int(bitmap, 16)
    indices = [i for i in range(bits.bit_length()) if bits >> i & 1]
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def squeue_job(j: dict[str, Any]) -> dict[str, Any]:
    """What ``squeue --json`` says of a job, in the API's field names."""
    cpus = number(j["cpus"]) or 0
    memory = number(j["memory_per_node"]) or (number(j["memory_per_cpu"]) or 0) * max(cpus, 1)
    exit_code, signal = exit_and_signal(j["exit_code"])
    tres = j["tres_alloc_str"] or j["tres_req_str"]
    return {
        "id": display_id(
            j["job_id"],
            number(j["array_job_id"]),
            number(j["array_task_id"]),
            j.get("array_task_string") or "",
        ),
        "name": j["name"],
        "user": j["user_name"],
        "account": j["account"] or None,
        "partition": j["partition"],
        "state": base_state(j["job_state"]),
        "exit_code": exit_code,
        "signal": signal,
        "cpus": cpus,
        "node_count": number(j["node_count"]) or 0,
        "nodes": j["nodes"] or None,
        "memory_mb": memory or tres_count(j["tres_req_str"], "mem") or None,
        "gpus": tres_count(tres, "gres/gpu"),
        "time_limit_minutes": number(j["time_limit"]),
        "submit_time": moment(j["submit_time"]),
        "start_time": moment(j["start_time"]),
        "end_time": moment(j["end_time"]),
    }


def api_job(j: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "name",
        "user",
        "account",
        "partition",
        "state",
        "exit_code",
        "signal",
        "cpus",
        "node_count",
        "nodes",
        "memory_mb",
        "gpus",
        "time_limit_minutes",
    )
    out = {k: j[k] for k in keys}
    for k in ("submit_time", "start_time", "end_time"):
        out[k] = api_moment(j[k])
    return out


def slurm_node(n: dict[str, Any]) -> dict[str, Any]:
    """A node as ``sinfo --json`` (22.05) or ``scontrol --json show nodes`` writes it."""
    state = n["state"]
    flags = list(n.get("state_flags", [])) if isinstance(state, str) else list(state[1:])
    return {
        "name": n["name"],
        "state": base_state(state).lower(),
        "flags": flags,
        "partitions": list(n.get("partitions") or []),
        "cpus_total": number(n["cpus"]),
        "cpus_allocated": number(n["alloc_cpus"]),
        "memory_total_mb": number(n["real_memory"]),
        "memory_allocated_mb": number(n["alloc_memory"]),
        "gpus_total": gres_gpus(n["gres"]),
        "gpus_allocated": gres_gpus(n["gres_used"]),
        "reason": n["reason"] or None,
        "boot_time": moment(n["boot_time"]),
    }


def api_node(n: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name",
        "state",
        "flags",
        "partitions",
        "cpus_total",
        "cpus_allocated",
        "memory_total_mb",
        "memory_allocated_mb",
        "gpus_total",
        "gpus_allocated",
        "reason",
    )
    return {**{k: n[k] for k in keys}, "boot_time": api_moment(n["boot_time"])}


def sacct_job(r: dict[str, Any]) -> dict[str, Any]:
    """One ``sacct --json -X`` record in the API's field names."""
    req, t, array = r["required"], r["time"], r["array"]
    if "memory" in req:  # 22.05: one number
        memory = number(req["memory"])
    else:
        memory = number(req["memory_per_node"]) or (
            (number(req["memory_per_cpu"]) or 0) * max(req["CPUs"], 1)
        )
    ec = r["exit_code"]
    signal = number(ec["signal"]["id"]) or None if "signal" in ec else None
    end = moment(t["end"])
    gpus = sum(
        x["count"] for x in r["tres"]["allocated"] if x["type"] == "gres" and x["name"] == "gpu"
    )
    return {
        "id": display_id(
            r["job_id"], number(array["job_id"]), number(array["task_id"]), ranges(array["task"])
        ),
        "name": r["name"],
        "user": r["user"],
        "account": r["account"] or None,
        "partition": r["partition"] or None,
        "state": base_state(r["state"]["current"]),
        "exit_code": number(ec["return_code"]),
        "signal": signal,
        "cpus_requested": req["CPUs"],
        "node_count": number(r["allocation_nodes"]) or 0,
        "nodes": r["nodes"] if r["nodes"] not in ("", "None assigned") else None,
        "memory_requested_mb": memory or None,
        "gpus": gpus,
        "time_limit_minutes": number(t["limit"]),
        "submit_time": moment(t["submission"]),
        "start_time": moment(t["start"]),
        "end_time": end,
        # A running job's elapsed time grows between the two reads.
        "elapsed_seconds": number(t["elapsed"]) if end else None,
    }


def api_record(r: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "name",
        "user",
        "account",
        "partition",
        "state",
        "exit_code",
        "signal",
        "cpus_requested",
        "node_count",
        "nodes",
        "memory_requested_mb",
        "time_limit_minutes",
    )
    out = {k: r[k] for k in keys}
    out["gpus"] = r["tres_allocated"].get("gres/gpu", 0)
    for k in ("submit_time", "start_time", "end_time"):
        out[k] = api_moment(r[k])
    out["elapsed_seconds"] = r["elapsed_seconds"] if out["end_time"] else None
    return out


# --- comparing at one moment ----------------------------------------------------------


def differences(ours: dict[Any, dict[str, Any]], theirs: dict[Any, dict[str, Any]]) -> list[str]:
    """Every key and field where the two sides disagree, worded for the failure."""
    out = [f"{k}: only in the API" for k in ours.keys() - theirs.keys()]
    out += [f"{k}: only in Slurm's output" for k in theirs.keys() - ours.keys()]
    for key in ours.keys() & theirs.keys():
        for field, value in theirs[key].items():
            if ours[key][field] != value:
                out.append(f"{key}.{field}: API {ours[key][field]!r}, Slurm {value!r}")
    return sorted(out)


def get(portal: RunningPortal, headers: dict[str, str], path: str, **params: Any) -> Any:
    with portal.client() as c:
        r: httpx.Response = c.get(path, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def agree(read: Any) -> tuple[dict[Any, dict[str, Any]], list[str]]:
    """Call ``read()`` (-> the API's and Slurm's views) until they agree, at most
    ``ATTEMPTS`` times; return the API's view and the last differences."""
    diffs: list[str] = []
    for _ in range(ATTEMPTS):
        ours, theirs = read()
        diffs = differences(ours, theirs)
        if not diffs:
            break
        time.sleep(1.5)
    return ours, diffs


def fresh(portal: RunningPortal) -> int:
    """Wait for a snapshot taken after this moment and return its generation."""
    return portal.wait_for_generation(portal.services.snapshot.health().generation)


def test_nodes_equal_what_slurm_prints(
    portal: RunningPortal, conf: str, alice: dict[str, str], mix: Mix
) -> None:
    def read() -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
        fresh(portal)
        ours = get(portal, alice, "/api/v1/nodes")["items"]
        theirs = slurm_cli.all_nodes(conf)
        return {n["name"]: api_node(n) for n in ours}, {n["name"]: slurm_node(n) for n in theirs}

    ours, diffs = agree(read)
    assert diffs == []
    gpu_node = next(n for n in ours.values() if n["gpus_total"])
    assert gpu_node["gpus_allocated"] >= 1  # the mix's GPU job runs there


def test_jobs_equal_what_squeue_prints(
    portal: RunningPortal, conf: str, alice: dict[str, str], mix: Mix
) -> None:
    def read() -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
        fresh(portal)
        body = get(portal, alice, "/api/v1/jobs", limit=1000)
        assert body["total"] == len(body["items"]), "more than one page of jobs"
        theirs = slurm_cli.all_jobs(conf)
        return (
            {j["id"]: api_job(j) for j in body["items"]},
            {s["id"]: s for s in map(squeue_job, theirs)},
        )

    ours, diffs = agree(read)
    assert diffs == []
    check_known_facts(ours, mix, accounting=False)


def test_accounting_equals_what_sacct_prints(
    portal: RunningPortal, conf: str, alice: dict[str, str], mix: Mix, devcluster: dict[str, Any]
) -> None:
    start = mix.since

    def read() -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
        end = datetime.now(UTC).replace(microsecond=0)  # a new end: not the cached answer
        body = get(
            portal, alice, "/api/v1/accounting/jobs",
            start=start.isoformat(), end=end.isoformat(), limit=1000,
        )  # fmt: skip
        assert body["total"] == len(body["items"]), "more than one page of records"
        argv = ["sacct", "--json", "-X", "--allusers", "-S", sacct_time(start)]
        theirs = slurm_cli.json_of(conf, [*argv, "-E", sacct_time(end)])["jobs"]
        return (
            {r["id"]: api_record(r) for r in body["items"]},
            {s["id"]: s for s in map(sacct_job, theirs)},
        )

    ours, diffs = agree(read)
    assert diffs == []
    # Slurm 22.05's sacct --json writes 0 as every job's exit code (README, Troubleshooting).
    check_known_facts(ours, mix, accounting=True, exit_codes=devcluster["release"] != "22.05")


def check_known_facts(
    ours: dict[Any, dict[str, Any]], mix: Mix, *, accounting: bool, exit_codes: bool = True
) -> None:
    """What the mix is, whatever any decoder says: both sides wrong in the same way fail."""
    ids = mix.ids
    by_id = {str(ids[role]): role for role in ids}
    roles = {by_id[k]: v for k, v in ours.items() if k in by_id}
    tasks = [v for k, v in ours.items() if k.startswith(f"{ids['array']}_")]
    assert sorted(t["id"] for t in tasks) == [f"{ids['array']}_{i}" for i in (1, 2, 3)]
    assert {t["state"] for t in tasks} == {"RUNNING"} and {t["name"] for t in tasks} == {"eq-array"}
    assert roles["timeout"]["state"] == "TIMEOUT" and roles["timeout"]["time_limit_minutes"] == 1
    assert roles["failed"]["state"] == "FAILED"
    if exit_codes:
        assert roles["failed"]["exit_code"] == 3
    assert roles["cancelled"]["state"] == "CANCELLED"
    if not accounting:  # sacct -S lists no job that was never eligible, such as a held one
        assert roles["held"]["state"] == "PENDING"
    multi, gpu = roles["multi"], roles["gpu"]
    assert multi["state"] == "RUNNING" and multi["node_count"] == 2
    assert gpu["state"] == "RUNNING" and gpu["gpus"] == 1 and gpu["user"] == "bob"
    memory = "memory_requested_mb" if accounting else "memory_mb"
    assert multi[memory] == 600 and gpu[memory] == 700
    assert (multi["cpus_requested"] if accounting else multi["cpus"]) == 2
    for role in ("failed", "cancelled", "timeout"):
        ended = roles[role]
        assert (
            ended["start_time"] and ended["end_time"] and ended["end_time"] >= ended["start_time"]
        )
