"""The Slurm adapter against a live cluster of a newer release (24.11, 26.05).

Runs only for the releases named in ``$HPCPORTAL_TEST_SLURM_RELEASES`` (as
``test_devcluster_releases.py``): each test brings up its own cluster in a new
directory beside the shared one, points an executor at its ``bin/`` (commands run
as the portal's own user; reading as another user through ``runas`` is not possible
on these releases yet), submits as alice through the cluster's wrappers, checks that
``jobs()``, ``nodes()``, ``partitions()`` and ``accounting()`` decode in the format
the adapter chose, and purges the cluster.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import SlurmExecutor
from hpcportal.slurm.models import AccountingRecord, Job
from hpcportal.slurm.states import JobStatus
from tests.integration.test_devcluster_releases import (  # noqa: F401  (fixtures)
    UP_TIMEOUT,
    alice_dir,
    as_alice,
    cli,
    cluster_dir,
    release,
    wait_for,
)

#: The format the adapter must choose: the newest each release offers.
EXPECTED_FORMAT = {"24.11": "v0.0.42", "26.05": "v0.0.45"}


def test_adapter_decodes_a_release_cluster(
    release: str,  # noqa: F811
    cluster_dir: Path,  # noqa: F811
    alice_dir: Path,  # noqa: F811
) -> None:
    up = cli("up", "--slurm", release, "--dir", str(cluster_dir), timeout=UP_TIMEOUT)
    assert up.returncode == 0, up.stdout + up.stderr
    status = json.loads(cli("status", "--json", "--dir", str(cluster_dir)).stdout)
    bin_dir = Path(status["bin_dir"])
    cluster = SlurmCluster(
        name=f"dev-{release}", slurm_conf=Path(status["slurm_conf"]), bin_dir=bin_dir
    )
    executor = SlurmExecutor(cluster=cluster)
    adapter = SlurmAdapter(executor, cache_seconds=0)

    detected = adapter.cluster()
    assert detected.release is not None and detected.release.series == release
    assert detected.data_format == EXPECTED_FORMAT[release]

    def submit(*args: str) -> str:
        out = as_alice([str(bin_dir / "sbatch"), "--parsable", f"--chdir={alice_dir}", *args])
        return out.split(";")[0].strip()

    failed = submit("-J", "it-failed", "-o", "/dev/null", "--wrap", "exit 3")
    running = submit(
        "-J", "it-running", "-c", "2", "--mem=1000", "-o", "/dev/null", "--wrap", "sleep 300"
    )

    def jobs_settled() -> dict[str, Job] | None:
        jobs = {str(j.job_id): j for j in adapter.jobs()}
        done = jobs.get(failed)
        busy = jobs.get(running)
        ok = done and done.status is JobStatus.FAILED and busy and busy.start_time
        return jobs if ok else None

    jobs = wait_for("the failed job ended and the other one running", jobs_settled, timeout=90)
    assert jobs[failed].exit_code == 3 and jobs[failed].user == "alice"
    busy = jobs[running]
    assert busy.status is JobStatus.RUNNING and (busy.cpus, busy.memory_mb) == (2, 1000)
    assert busy.nodes is not None and busy.node_names == [busy.nodes]

    nodes = {n.name: n for n in adapter.nodes()}
    assert sorted(nodes) == ["gpu001", "node001", "node002", "node003", "node004", "viz-node001"]
    assert nodes["gpu001"].gpus_total == 2
    for node in nodes.values():
        assert (node.cpus_total, node.memory_total_mb) == (4, 4000)
        assert node.memory_free_mb and node.slurmd_version
        assert node.slurmd_version.startswith(release)
    host = nodes[busy.node_names[0]]
    assert host.cpus_allocated >= 2 and host.cpus_idle == 4 - host.cpus_allocated

    partitions = {p.name: p for p in adapter.partitions()}
    assert partitions["normal"].node_names == ["node001", "node002", "node003", "node004"]

    now = datetime.now(UTC).replace(tzinfo=None)

    def accounted() -> dict[str, AccountingRecord] | None:
        window = (now - timedelta(hours=1), now + timedelta(minutes=5))
        records = {str(r.job_id): r for r in adapter.accounting(*window, users=["alice"])}
        record = records.get(failed)
        return records if record and record.status is JobStatus.FAILED else None

    records = wait_for("the failed job in accounting", accounted, timeout=90)
    assert records[failed].exit_code == 3
    assert records[running].memory_requested_mb == 1000

    as_alice([str(bin_dir / "scancel"), running])
    assert executor.calls["scontrol"] >= 2  # version, --json=list, partitions
