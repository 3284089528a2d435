"""Slurm's own HA: the primary slurmctld dies, the backup takes over (issue 12, item 6).

A dev cluster of its own (``dev-cluster up --backup-controller``: ``SlurmctldHost``
twice, one shared ``StateSaveLocation``, ``SlurmctldTimeout`` 8 s) on 22.05, in its own
directory and port slot, purged afterwards; the shared clusters are never touched.
The portal keeps answering reads from its last snapshot, marked stale while no
controller answers; once the backup has taken over, the snapshot is fresh again, a
job submitted before is still there, and a new submit succeeds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.devcluster import DevCluster
from tests.integration.conftest import REPO_ROOT
from tests.integration.portal_server import portal_settings, run_portal

#: Its own directory (so its own port slot and accounting database).
CLUSTER_DIR = Path(
    os.environ.get("HPCPORTAL_TEST_HA_DEVCLUSTER_DIR", REPO_ROOT / ".devcluster-slurm-ha")
)
JOB = {"script": "#!/bin/bash\nsleep 600\n", "name": "ha"}


@pytest.fixture(scope="module")
def ha_cluster() -> Iterator[DevCluster]:
    cluster = DevCluster(CLUSTER_DIR, release="22.05", backup_controller=True)
    try:
        status = cluster.up()
        assert status["ok"], f"HA dev cluster is not healthy: {status}"
        yield cluster
    finally:
        DevCluster(CLUSTER_DIR).down(purge=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def component(cluster: DevCluster, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in cluster.status()["components"] if c["name"] == name]
    (only,) = found
    return only


def test_config_names_two_controllers_sharing_the_state(ha_cluster: DevCluster) -> None:
    text = ha_cluster.slurm_conf.read_text()
    hosts = [line for line in text.splitlines() if line.startswith("SlurmctldHost=")]
    assert len(hosts) == 2 and "hpcdev-backup(127.0.0.2)" in hosts[1]
    assert text.count("StateSaveLocation=") == 1
    assert component(ha_cluster, "slurmctld-backup")["running"]


def test_reads_and_submits_survive_a_controller_takeover(
    ha_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = portal_settings(
        tmp_path_factory.mktemp("slurm_ha"),
        str(ha_cluster.slurm_conf),
        refresh_interval=0.5,
        stale_after=30.0,
        slurm_timeout=3.0,
        slurm_bin_dir=None,
    )
    with run_portal(settings) as portal:
        headers = portal.login("alice")
        portal.wait_for_generation(0)
        with portal.client() as c:
            before = c.post("/api/v1/jobs", json=JOB, headers=headers)
            assert before.status_code in (200, 201), before.text
            before_id = before.json()["job_id"]
            wait_until(
                lambda: c.get(f"/api/v1/jobs/{before_id}", headers=headers).status_code == 200,
                30,
                "the first job in the snapshot",
            )

            primary = component(ha_cluster, "slurmctld")
            assert primary["running"] and component(ha_cluster, "slurmctld-backup")["running"]
            os.kill(int(primary["pid"]), signal.SIGKILL)
            killed_at = time.monotonic()

            answers: list[dict[str, Any]] = []

            def fresh_after_stale() -> bool:
                r = c.get("/api/v1/jobs", headers=headers)
                assert r.status_code == 200, r.text  # every read answers, throughout
                answers.append(r.json()["snapshot"])
                stale = [a for a in answers if a["stale"]]
                return bool(stale) and not answers[-1]["stale"]

            wait_until(fresh_after_stale, 90, "backup controller took over")
            takeover = time.monotonic() - killed_at
            stale = [a for a in answers if a["stale"]]
            assert stale and all(a["error"] for a in stale), stale[:3]
            assert before_id in {
                j["job_id"] for j in c.get("/api/v1/jobs", headers=headers).json()["items"]
            }, "the job submitted before the takeover is known to the backup"

            after = c.post("/api/v1/jobs", json=JOB, headers=headers)
            assert after.status_code in (200, 201), after.text
            after_id = after.json()["job_id"]
            assert after_id > before_id
            wait_until(
                lambda: c.get(f"/api/v1/jobs/{after_id}", headers=headers).status_code == 200,
                30,
                "the job submitted after the takeover in the snapshot",
            )
            for job_id in (before_id, after_id):
                c.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
        print(f"takeover seen by the portal {takeover:.1f} s after the primary was killed")
