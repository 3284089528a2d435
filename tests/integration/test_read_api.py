"""The read API against the live dev cluster, compared with Slurm's own answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcportal.errors import NotFound
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.identity import lookup_principal
from hpcportal.services.jobs import find_in_accounting
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal


@pytest.fixture(scope="module")
def held_jobs(conf: str) -> Iterator[dict[str, int]]:
    """Jobs that stay put while we compare: held, so nothing changes under us."""
    jobs = {
        "alice": slurm_cli.sbatch(conf, "alice", "--hold", "-J", "held-a", "--wrap", "true"),
        "bob": slurm_cli.sbatch(
            conf, "bob", "--hold", "-J", "held-b", "--array=1-3", "--wrap", "true"
        ),
        "dave": slurm_cli.sbatch(conf, "dave", "--hold", "-J", "held-d", "--wrap", "true"),
    }
    yield jobs
    slurm_cli.scancel(conf, *jobs.values())


def get(portal: RunningPortal, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    with portal.client() as c:
        return c.get(path, headers=headers, params=params)


def fresh(portal: RunningPortal) -> None:
    """Wait for a snapshot taken after this moment."""
    portal.wait_for_generation(portal.services.snapshot.health().generation)


def test_nodes_agree_with_sinfo(portal: RunningPortal, conf: str, alice: dict[str, str]) -> None:
    for _ in range(5):  # a job of an earlier test may start or end between the reads
        fresh(portal)
        ours = get(portal, "/api/v1/nodes", alice).json()
        theirs = slurm_cli.all_nodes(conf)
        states = {n["name"]: slurm_cli.base_state(n["state"]).lower() for n in theirs}
        if {n["name"]: n["state"] for n in ours["items"]} == states:
            break
    assert {n["name"]: n["state"] for n in ours["items"]} == states
    assert all(node["cpus_total"] == 4 for node in ours["items"])
    assert ours["snapshot"]["stale"] is False


def all_jobs(portal: RunningPortal, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every job the API lists, page by page, from one snapshot."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(portal, "/api/v1/jobs", headers, limit=1000, page=page).json()
        items += body["items"]
        if len(items) >= body["total"] or not body["items"]:
            return items
        page += 1


def test_jobs_agree_with_squeue(
    portal: RunningPortal, conf: str, alice: dict[str, str], held_jobs: dict[str, int]
) -> None:
    for _ in range(5):  # jobs may change between the two reads; retry then
        fresh(portal)
        generation = portal.services.snapshot.health().generation
        ours = all_jobs(portal, alice)
        theirs = slurm_cli.all_jobs(conf)
        their_states = {j["job_id"]: slurm_cli.base_state(j["job_state"]) for j in theirs}
        our_states = {j["job_id"]: j["state"] for j in ours}
        same_snapshot = portal.services.snapshot.health().generation == generation
        if our_states == their_states and same_snapshot:
            break
    assert our_states == their_states
    assert len(ours) == len(theirs)
    names = {j["job_id"]: j["name"] for j in theirs}
    assert all(names[j["job_id"]] == j["name"] for j in ours)
    assert our_states[held_jobs["alice"]] == "PENDING"


def test_filters_and_collapsed_arrays(
    portal: RunningPortal, alice: dict[str, str], held_jobs: dict[str, int]
) -> None:
    fresh(portal)
    mine = get(portal, "/api/v1/jobs", alice, user="alice", state="queued_held").json()
    assert str(held_jobs["alice"]) in {j["id"] for j in mine["items"]}
    assert {j["user"] for j in mine["items"]} == {"alice"}
    arrays = get(
        portal, "/api/v1/jobs", alice, user="bob", arrays="collapsed", name="held-b"
    ).json()
    rows = {r["id"]: r for r in arrays["items"]}
    row = rows[str(held_jobs["bob"])]
    assert f"{held_jobs['bob']}_1" not in rows
    assert row["array"]["job_id"] == held_jobs["bob"]
    assert arrays["array_summaries"][row["id"]] == {"queued_held": 3}


def test_private_fields_and_script_only_for_owner_and_admin(
    portal: RunningPortal,
    alice: dict[str, str],
    bob: dict[str, str],
    carol: dict[str, str],
    held_jobs: dict[str, int],
) -> None:
    fresh(portal)
    path = f"/api/v1/jobs/{held_jobs['alice']}"
    own = get(portal, path, alice, script="true").json()
    assert own["job"]["private"]["work_dir"] == "/home/alice"
    assert own["script"].startswith("#!") and "true" in own["script"]
    other = get(portal, path, bob, script="true").json()
    assert other["job"]["private"] is None and other["script"] is None
    assert other["job"]["name"] == "held-a"  # public fields, as squeue shows them
    admin = get(portal, path, carol, script="true").json()
    assert admin["job"]["private"]["work_dir"] == "/home/alice"
    assert admin["script"] == own["script"]


def test_finished_job_comes_from_accounting(
    portal: RunningPortal, conf: str, alice: dict[str, str]
) -> None:
    job_id = slurm_cli.sbatch(conf, "alice", "--wait", "-J", "acct-check", "--wrap", "echo done")
    start = str(datetime.now(UTC).date() - timedelta(days=1))
    deadline = time.monotonic() + 30
    while True:  # slurmctld hands finished jobs to slurmdbd asynchronously
        body = get(portal, "/api/v1/accounting/jobs", alice, start=start, user="alice").json()
        found = [r for r in body["items"] if r["job_id"] == job_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert found, f"job {job_id} not in accounting: {body}"
    record = found[0]
    submitted = [r["submit_time"] for r in body["items"]]
    assert submitted == sorted(submitted, reverse=True)  # newest first
    assert record["status"] == "completed" and record["name"] == "acct-check"
    assert record["work_dir"] == "/home/alice"


def test_job_forgotten_by_slurmctld_is_found_in_accounting(
    portal: RunningPortal, conf: str
) -> None:
    """Once slurmctld has forgotten a job (after MinJobAge) it is looked up in sacct."""
    job_id = slurm_cli.sbatch(conf, "alice", "--wait", "-J", "forgotten", "--wrap", "true")
    alice = lookup_principal("alice", "hpc-admins")
    bob = lookup_principal("bob", "hpc-admins")
    assert alice is not None and bob is not None
    meta = SnapshotMeta(taken_at=None, age_seconds=0, stale=False)
    adapter = portal.services.adapter
    deadline = time.monotonic() + 30
    while True:
        # slurmdbd records a job asynchronously; until the end record arrives sacct may
        # show a provisional record ("allocation") or none at all.
        adapter.cache.clear()
        try:
            found = find_in_accounting(adapter, str(job_id), alice, meta)
            if found.accounting is not None and found.accounting.name == "forgotten":
                break
        except NotFound:
            pass
        assert time.monotonic() < deadline, f"job {job_id} never reached accounting"
        time.sleep(1)
    assert found.source == "accounting" and found.accounting is not None
    assert found.accounting.name == "forgotten" and found.accounting.work_dir == "/home/alice"
    hidden = find_in_accounting(adapter, str(job_id), bob, meta).accounting
    assert hidden is not None and hidden.work_dir is None


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/v1/jobs", {"state": "sleeping"}, 422, "Unknown job state 'sleeping'"),
        ("/api/v1/jobs", {"colour": "red"}, 422, "Unknown query parameter 'colour'"),
        ("/api/v1/jobs", {"limit": "0"}, 422, "limit"),
        ("/api/v1/jobs", {"sort": "shoe_size"}, 422, "sort"),
        ("/api/v1/jobs/abc", {}, 422, "'abc' is not a job id"),
        ("/api/v1/jobs/99999999", {}, 404, "No job 99999999"),
        ("/api/v1/nodes/node999", {}, 404, "No node named 'node999'"),
        (
            "/api/v1/accounting/jobs",
            {"start": "2026-01-02", "end": "2026-01-01"},
            422,
            "start must be before end",
        ),
        ("/api/v1/accounting/jobs", {"start": "yesterday-ish"}, 422, "start"),
    ],
)
def test_bad_input_gets_a_clear_error(
    portal: RunningPortal,
    alice: dict[str, str],
    path: str,
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    r = get(portal, path, alice, **params)
    assert r.status_code == status, r.text
    body = r.json()
    assert message in body["detail"]
    assert "Traceback" not in r.text


def test_login_is_required(portal: RunningPortal) -> None:
    r = get(portal, "/api/v1/jobs", {})
    assert r.status_code == 401 and r.json()["detail"]


def test_summary_qos_accounts_fairshare_me(
    portal: RunningPortal, alice: dict[str, str], carol: dict[str, str]
) -> None:
    summary = get(portal, "/api/v1/cluster", alice).json()
    assert summary["nodes_total"] == len(get(portal, "/api/v1/nodes", alice).json()["items"])
    assert summary["cpus"]["total"] == 4 * summary["nodes_total"]
    assert {p["partition"]["name"] for p in summary["partitions"]} >= {"normal", "viz"}
    assert {q["name"] for q in get(portal, "/api/v1/qos", alice).json()} >= {"normal", "high"}
    accounts = get(portal, "/api/v1/accounts", alice, user="dave").json()
    assert [a["account"] for a in accounts] == ["physics"]
    shares = get(portal, "/api/v1/fairshare", alice).json()
    assert any(s["user"] == "alice" and s["account"] == "research" for s in shares)
    me = get(portal, "/api/v1/me", alice).json()
    assert me["user"] == "alice" and me["role"] == "user" and me["accounts"] == ["research"]
    assert get(portal, "/api/v1/me", carol).json()["role"] == "admin"


def test_openapi_health_ready_metrics(portal: RunningPortal, alice: dict[str, str]) -> None:
    spec = get(portal, "/api/v1/openapi.json", {}).json()
    for path in ("/api/v1/jobs", "/api/v1/nodes", "/api/v1/accounting/jobs", "/api/v1/auth/token"):
        assert path in spec["paths"]
    assert get(portal, "/health", {}).json() == {"status": "ok"}
    fresh(portal)
    ready = get(portal, "/ready", {})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = get(portal, "/metrics", {}).text
    for name in (
        "hpcportal_snapshot_refreshes_total",
        "hpcportal_snapshot_refresh_seconds",
        "hpcportal_snapshot_age_seconds",
        'hpcportal_slurm_calls_total{command="squeue"',
    ):
        assert name in metrics


def test_settings_point_at_dev_cluster(portal: RunningPortal, devcluster: dict[str, Any]) -> None:
    assert portal.settings.slurm_conf == Path(devcluster["slurm_conf"])
