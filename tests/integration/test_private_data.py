"""Slurm's PrivateData on every read path, against a dev cluster of its own.

The shared dev cluster has no ``PrivateData`` (and must not be reconfigured while
others test on it), so this module brings up a second one with
``PrivateData=jobs,usage,users`` in slurm.conf and slurmdbd.conf (``dev-cluster up
--private-data``, about 15 s in a new directory, its own ports and database) and
purges it afterwards. ``HPCPORTAL_TEST_PRIVATE_CLUSTER_DIR`` names a directory to
reuse instead, left running (quicker when iterating).

alice's and bob's answers (API, pages, live socket) are compared with what
``squeue``, ``sacct`` and ``sshare`` print run as them; bob coordinates ``physics``,
so he also sees dave's jobs there; carol (AdminLevel Administrator) sees everything,
and, lowered to AdminLevel None, no more than Slurm shows her although the portal
still calls her an admin. On the shared cluster, the 22.05 ``sacct --json``
that ignores ``--user`` must not put other people's jobs into alice's accounting.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from hpcportal.devcluster import DevCluster
from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

PRIVATE_DATA = "jobs,usage,users"
REUSE_ENV = "HPCPORTAL_TEST_PRIVATE_CLUSTER_DIR"
PASSWORDS = {name: f"{name}-demo" for name in ("alice", "bob", "carol", "dave")}
TIMEOUT = 60.0


@dataclass(frozen=True)
class Slurm:
    """Slurm's clients for one cluster: its ``bin/`` wrappers for a release from a root
    (24.11, 26.05), else the host's; run as root or, with ``user``, as that user."""

    conf: str
    bin_dir: str | None = None

    def run(self, argv: list[str], *, user: str | None = None) -> str:
        program = f"{self.bin_dir}/{argv[0]}" if self.bin_dir else argv[0]
        return slurm_cli.run(self.conf, [program, *argv[1:]], user=user)

    def sbatch(self, user: str, *args: str) -> int:
        out = self.run(
            ["sbatch", "--parsable", f"--chdir=/home/{user}", "-o", "/dev/null", *args], user=user
        )
        return int(out.strip().split(";")[0])

    def scancel(self, *job_ids: int) -> None:
        """Cancel; a job may have ended already."""
        program = f"{self.bin_dir}/scancel" if self.bin_dir else "scancel"
        subprocess.run(
            [program, *map(str, job_ids)], env=slurm_cli.env_for(self.conf), check=False,
            capture_output=True, timeout=60,
        )  # fmt: skip

    def state(self, job_id: int) -> str:
        return self.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"]).strip()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[dict[str, Any]]:
    """A dev cluster with ``PrivateData=jobs,usage,users``, beside the shared one."""
    reuse = os.environ.get(REUSE_ENV)
    directory = Path(reuse or Path(tempfile.gettempdir()) / f"hpcportal-private-{os.getpid()}")
    # The release the suite runs on (scripts/test.sh --slurm), so every release is checked.
    release = os.environ.get("HPCPORTAL_DEVCLUSTER_SLURM") or None
    cluster = DevCluster(directory, release=release, private_data=PRIVATE_DATA)
    started = time.monotonic()
    status = cluster.up()
    took = time.monotonic() - started
    print(f"private dev cluster ({status['slurm_version']}) up in {took:.1f} s at {directory}")
    assert status["ok"], f"private dev cluster is not healthy: {status['notes']}"
    assert status["private_data"] == PRIVATE_DATA
    try:
        yield status
    finally:
        if not reuse:
            cluster.down(purge=True)


@pytest.fixture(scope="module")
def slurm(private_cluster: dict[str, Any]) -> Slurm:
    return Slurm(str(private_cluster["slurm_conf"]), private_cluster.get("bin_dir"))


@pytest.fixture(scope="module")
def portal(slurm: Slurm, make_portal: PortalFactory) -> RunningPortal:
    # Roles are re-read within a second, so changing carol's AdminLevel shows at once.
    # The cluster's own clients, whatever HPCPORTAL_SLURM_BIN_DIR the session set.
    return make_portal(
        slurm_conf=slurm.conf, refresh_interval=1.0, accounting_cache_seconds=0.5,
        slurm_bin_dir=slurm.bin_dir,
    )  # fmt: skip


@pytest.fixture(scope="module")
def jobs(slurm: Slurm, portal: RunningPortal) -> Iterator[dict[str, int]]:
    """A running job each of alice, bob and dave, and a finished one of bob's; bob
    coordinates dave's account ``physics``."""
    slurm.run(["sacctmgr", "-i", "add", "coordinator", "account=physics", "names=bob"])
    submitted = {
        "dave": slurm.sbatch("dave", "-J", "dave-private", "--wrap", "sleep 300"),
        "alice": slurm.sbatch("alice", "-J", "alice-private", "--wrap", "sleep 300"),
        "bob": slurm.sbatch("bob", "-J", "bob-private", "--wrap", "sleep 300"),
        "bob_done": slurm.sbatch("bob", "-J", "bob-done", "--wrap", "true"),
    }
    try:
        running = [submitted[name] for name in ("alice", "bob", "dave")]
        wait_for("the jobs to run", lambda: all(slurm.state(j) == "RUNNING" for j in running))
        wait_for(
            "bob to see dave's job", lambda: str(submitted["dave"]) in squeue_ids(slurm, "bob")
        )
        wait_for("bob's short job in accounting", lambda: _in_sacct(slurm, submitted["bob_done"]))
        portal.wait_for_generation(portal.services.snapshot.health().generation)
        yield submitted
    finally:
        slurm.scancel(*submitted.values())


def _in_sacct(slurm: Slurm, job_id: int) -> bool:
    out = slurm.run(["sacct", "-X", "-n", "-P", "-j", str(job_id), "-o", "state"])
    return "COMPLETED" in out


@pytest.fixture(scope="module")
def tokens(portal: RunningPortal) -> dict[str, dict[str, str]]:
    return {name: portal.login(name) for name in ("alice", "bob", "carol")}


def api(portal: RunningPortal, headers: dict[str, str], path: str, **params: Any) -> Any:
    with portal.client(headers=headers) as client:
        response = client.get(f"/api/v1{path}", params=params)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response.json()


def squeue_ids(slurm: Slurm, user: str) -> set[str]:
    """Job ids ``squeue --all --states=all`` run as ``user`` prints (finished jobs too,
    like the portal, until slurmctld forgets them)."""
    out = slurm.run(["squeue", "--all", "--states=all", "-h", "-o", "%i"], user=user)
    return {line.strip() for line in out.splitlines() if line.strip()}


def portal_ids(portal: RunningPortal, headers: dict[str, str]) -> set[str]:
    return {j["id"] for j in api(portal, headers, "/jobs", limit=1000)["items"]}


def test_api_jobs_equal_squeue_as_each_user(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    for user in ("alice", "bob", "carol"):
        # Both sides change only if a job ends; the sleeps outlive the test.
        assert portal_ids(portal, tokens[user]) == squeue_ids(slurm, user), user
    assert str(jobs["bob"]) not in portal_ids(portal, tokens["alice"])
    assert str(jobs["dave"]) in portal_ids(portal, tokens["bob"])  # he coordinates physics
    assert {str(jobs["alice"]), str(jobs["bob"])} <= portal_ids(portal, tokens["carol"])
    # Asking for bob's jobs by name does not get round it.
    mine = api(portal, tokens["alice"], "/jobs", user="bob")
    assert mine["items"] == [] and mine["total"] == 0


def test_someone_elses_job_is_not_found(
    portal: RunningPortal, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    with portal.client(headers=tokens["alice"]) as client:
        for job_id in (jobs["bob"], jobs["bob_done"], 999_999):
            response = client.get(f"/api/v1/jobs/{job_id}")
            assert response.status_code == 404, (job_id, response.text)
            # The same answer as for a job that never existed: nothing to tell them apart.
            assert response.json()["detail"] == f"No job {job_id} in the queue or in accounting."
        response = client.get(f"/api/v1/jobs/{jobs['bob_done']}/efficiency")
        assert response.status_code == 404, response.text
    assert api(portal, tokens["bob"], f"/jobs/{jobs['bob_done']}/efficiency")["cpus"] >= 1
    assert api(portal, tokens["carol"], f"/jobs/{jobs['bob']}")["job"]["user"] == "bob"
    assert api(portal, tokens["bob"], f"/jobs/{jobs['bob']}")["job"]["user"] == "bob"


def test_cluster_summary_counts_only_visible_jobs(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    alice = api(portal, tokens["alice"], "/cluster")
    carol = api(portal, tokens["carol"], "/cluster")
    assert alice["jobs_total"] == len(squeue_ids(slurm, "alice"))
    assert carol["jobs_total"] == len(squeue_ids(slurm, "carol")) >= alice["jobs_total"] + 1
    assert sum(p["jobs_running"] for p in alice["partitions"]) == alice["jobs_by_status"].get(
        "running", 0
    )
    # Node state is not private here: sinfo shows alice the same nodes as carol.
    assert alice["nodes_total"] == carol["nodes_total"] > 0


def test_accounting_equals_sacct_as_each_user(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    end = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    window = ["-S", start.strftime("%Y-%m-%dT%H:%M:%S"), "-E", end.strftime("%Y-%m-%dT%H:%M:%S")]
    for user in ("alice", "bob", "carol"):
        out = slurm.run(
            ["sacct", "-X", "--allusers", "-n", "-P", "-o", "jobid", *window], user=user
        )
        expected = {line.strip() for line in out.splitlines() if line.strip()}
        page = api(
            portal, tokens[user], "/accounting/jobs", start=start.isoformat(),
            end=end.isoformat(), limit=1000,
        )  # fmt: skip
        assert {r["id"] for r in page["items"]} == expected, user
    alices = api(portal, tokens["alice"], "/accounting/jobs", limit=1000)["items"]
    assert alices and {r["user"] for r in alices} == {"alice"}
    bobs = api(portal, tokens["alice"], "/accounting/jobs", user="bob", limit=1000)
    assert bobs["items"] == []
    carols = api(portal, tokens["carol"], "/accounting/jobs", user="bob", limit=1000)["items"]
    assert str(jobs["bob_done"]) in {r["id"] for r in carols}


def test_fairshare_equals_sshare_as_each_user(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    for user in ("alice", "bob", "carol"):
        out = slurm.run(["sshare", "--all", "--parsable2", "-n"], user=user)
        expected = {
            (fields[0].strip(), fields[1].strip() or None)
            for fields in (line.split("|") for line in out.splitlines() if line.strip())
        }
        rows = api(portal, tokens[user], "/fairshare")
        assert {(r["account"], r["user"]) for r in rows} == expected, user
    assert [(r["account"], r["user"]) for r in api(portal, tokens["alice"], "/fairshare")] == [
        ("research", "alice")
    ]
    assert ("physics", "dave") in {(r["account"], r["user"]) for r in api(
        portal, tokens["bob"], "/fairshare"
    )}  # fmt: skip


def test_associations_equal_sacctmgr_as_each_user(
    portal: RunningPortal, slurm: Slurm, tokens: dict[str, dict[str, str]]
) -> None:
    """PrivateData=users: one's own associations, those of accounts one coordinates,
    and (before 23.11) the account rows above them."""
    for user in ("alice", "bob", "carol"):
        out = slurm.run(
            ["sacctmgr", "-n", "-P", "show", "associations", "format=account,user"], user=user
        )
        expected = {
            (account, name or None)
            for account, name in (line.split("|")[:2] for line in out.splitlines() if line)
        }
        rows = api(portal, tokens[user], "/accounts")
        assert {(r["account"], r["user"]) for r in rows} == expected, user
    alices = {(r["account"], r["user"]) for r in api(portal, tokens["alice"], "/accounts")}
    # Account rows above hers only before 23.11; nobody else's association ever.
    assert ("research", "alice") in alices and {u for _, u in alices} <= {None, "alice"}


def browser(portal: RunningPortal, user: str) -> httpx.Client:
    client = portal.client(follow_redirects=False)
    client.cookies.set("hpcportal_lang", "en")
    response = client.post(
        "/login", data={"username": user, "password": PASSWORDS[user], "next": "/jobs"}
    )
    assert response.status_code == 303, response.text
    return client


def test_pages_show_alice_none_of_bobs_jobs(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int]
) -> None:
    bob_job = str(jobs["bob"])
    node = slurm.run(["squeue", "-h", "-j", bob_job, "-o", "%N"]).strip()
    alice, carol = browser(portal, "alice"), browser(portal, "carol")
    try:
        assert alice.get(f"/jobs/{bob_job}").status_code == 404
        assert carol.get(f"/jobs/{bob_job}").status_code == 200
        for path in (f"/nodes/{node}", f"/partials/nodes/{node}", "/jobs?scope=all", "/"):
            page = alice.get(path)
            assert page.status_code == 200, path
            assert "bob-private" not in page.text, path
        assert "bob-private" in carol.get(f"/nodes/{node}").text
        assert "bob-private" in carol.get("/jobs?scope=all").text
    finally:
        alice.close()
        carol.close()


def test_live_socket_carries_none_of_bobs_jobs(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    url = portal.url.replace("http://", "ws://") + "/api/v1/ws"
    sockets = {
        user: connect(url, additional_headers=tokens[user], proxy=None, max_size=None, legacy=True)
        for user in ("alice", "carol")
    }
    received: dict[str, list[dict[str, Any]]] = {user: [] for user in sockets}
    try:
        for ws in sockets.values():
            ws.recv(timeout=10)  # hello
            ws.send(json.dumps({"type": "subscribe", "channels": ["jobs", "cluster"]}))
        new_bob = slurm.sbatch("bob", "-J", "bob-live", "--wrap", "sleep 300")
        new_alice = slurm.sbatch("alice", "-J", "alice-live", "--wrap", "sleep 300")
        try:

            def seen(user: str, job_id: int) -> bool:
                ws = sockets[user]
                try:
                    while True:
                        received[user].append(json.loads(ws.recv(timeout=0.2)))
                except TimeoutError:
                    pass
                return any(
                    j["id"] == str(job_id)
                    for m in received[user]
                    if m["type"] == "jobs"
                    for j in m["changed"]
                )

            wait_for("carol hears of both jobs", lambda: seen("carol", new_bob))
            wait_for("carol hears of alice's", lambda: seen("carol", new_alice))
            wait_for("alice hears of her job", lambda: seen("alice", new_alice))
            # One refresh more, so any message about bob's job would have come.
            portal.wait_for_generation(portal.services.snapshot.health().generation)
            seen("alice", new_alice)
        finally:
            slurm.scancel(new_bob, new_alice)
    finally:
        for ws in sockets.values():
            ws.close()
    messages = [m for m in received["alice"] if m["type"] == "jobs"]
    heard = [j for m in messages for j in m["changed"]]
    removed = {job_id for m in messages for job_id in m["removed"]}
    assert heard and {j["user"] for j in heard} == {"alice"}
    assert not {str(new_bob), str(jobs["bob"]), str(jobs["bob_done"])} & removed
    assert "bob-" not in json.dumps(received["alice"])
    summaries = [m["summary"] for m in received["alice"] if m["type"] == "cluster"]
    assert summaries, "alice got no cluster summary"
    own = len(squeue_ids(slurm, "alice"))
    assert summaries[-1]["jobs_total"] <= own + 1  # her jobs only (one may have ended since)


def test_a_portal_admin_sees_no_more_than_slurm_shows_her(
    portal: RunningPortal, slurm: Slurm, jobs: dict[str, int], tokens: dict[str, dict[str, str]]
) -> None:
    """carol is an admin of the portal (group hpc-admins); without her AdminLevel she is
    a regular user to Slurm, and the portal shows her what squeue shows her."""

    def set_level(level: str) -> None:
        slurm.run(["sacctmgr", "-i", "modify", "user", "carol", "set", f"adminlevel={level}"])

    set_level("None")
    try:
        wait_for(
            "squeue to hide bob's job from carol",
            lambda: str(jobs["bob"]) not in squeue_ids(slurm, "carol"),
        )
        wait_for(
            "the portal to hide bob's job from carol",
            lambda: str(jobs["bob"]) not in portal_ids(portal, tokens["carol"]),
        )
        assert portal_ids(portal, tokens["carol"]) == squeue_ids(slurm, "carol")
        assert api(portal, tokens["carol"], "/me")["role"] == "admin"
        with portal.client(headers=tokens["carol"]) as client:
            assert client.get(f"/api/v1/jobs/{jobs['bob']}").status_code == 404
    finally:
        set_level("Administrator")
    wait_for(
        "carol to see bob's job again",
        lambda: str(jobs["bob"]) in portal_ids(portal, tokens["carol"]),
    )


def test_reconfigured_to_private_nodes_and_partitions(
    portal: RunningPortal, slurm: Slurm, tokens: dict[str, dict[str, str]]
) -> None:
    """``scontrol reconfigure`` with nodes,partitions added: within a refresh the portal
    refuses alice nodes and partitions as sinfo does, and follows back when they go."""
    conf = Path(slurm.conf)
    original = conf.read_text()
    assert f"PrivateData={PRIVATE_DATA}\n" in original

    def sinfo_refused() -> bool:
        program = f"{slurm.bin_dir}/sinfo" if slurm.bin_dir else "sinfo"
        result = subprocess.run(
            ["runuser", "-u", "alice", "--", program, "-h"], env=slurm_cli.env_for(slurm.conf),
            capture_output=True, text=True, timeout=60, check=False, cwd="/tmp",
        )  # fmt: skip
        return result.returncode != 0 and "denied" in result.stderr

    def status(headers: dict[str, str], path: str) -> int:
        with portal.client(headers=headers) as client:
            return client.get(f"/api/v1{path}").status_code

    conf.write_text(
        original.replace(
            f"PrivateData={PRIVATE_DATA}\n", f"PrivateData={PRIVATE_DATA},nodes,partitions\n"
        )
    )
    try:
        slurm.run(["scontrol", "reconfigure"])
        wait_for("sinfo to refuse alice", sinfo_refused)
        wait_for(
            "the portal to refuse alice nodes", lambda: status(tokens["alice"], "/nodes") == 403
        )
        assert status(tokens["alice"], "/partitions") == 403
        assert status(tokens["carol"], "/nodes") == status(tokens["carol"], "/partitions") == 200
        summary = api(portal, tokens["alice"], "/cluster")
        assert summary["nodes_total"] == 0 and summary["partitions"] == []
        assert summary["jobs_total"] >= 1  # her jobs are still hers to see
    finally:
        conf.write_text(original)
        slurm.run(["scontrol", "reconfigure"])
    wait_for(
        "the portal to show alice nodes again", lambda: status(tokens["alice"], "/nodes") == 200
    )


# --- on the shared cluster, without PrivateData ----------------------------------------


@pytest.fixture(scope="module")
def shared_portal(make_portal: PortalFactory) -> RunningPortal:
    return make_portal()


def test_alices_accounting_never_holds_another_users_job(
    shared_portal: RunningPortal, devcluster: dict[str, Any]
) -> None:
    """22.05's ``sacct --json --user alice`` also returns bob's records; the portal keeps
    only the users asked for. Without PrivateData, everyone may still ask for anyone."""
    slurm = Slurm(str(devcluster["slurm_conf"]))  # the session's PATH has its clients
    job_id = slurm.sbatch("bob", "-J", "bob-acct", "--wrap", "true")
    wait_for("bob's job in accounting", lambda: _in_sacct(slurm, job_id))
    alice = shared_portal.login("alice")
    for who in (alice, shared_portal.login("carol")):
        page = api(shared_portal, who, "/accounting/jobs", user="alice", limit=1000)
        assert {r["user"] for r in page["items"]} <= {"alice"}
    # No PrivateData: alice may ask for bob's jobs, as sacct shows them to her.
    # Asked again until it shows: the portal's accounting answers are cached for
    # accounting_cache_seconds, and a CI run saw one answer without the new job.
    end = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    def bobs_jobs() -> dict[str, Any]:
        page: dict[str, Any] = api(
            shared_portal, alice, "/accounting/jobs", user="bob", end=end, limit=1000
        )
        return page

    wait_for(
        "bob's job in alice's view of his accounting",
        lambda: str(job_id) in {r["id"] for r in bobs_jobs()["items"]},
    )
    assert {r["user"] for r in bobs_jobs()["items"]} == {"bob"}
