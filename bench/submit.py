"""Benchmark job submission through the portal against bare sbatch, as the same user.

Run as root with the dev cluster up::

    .venv/bin/python bench/submit.py [--jobs 40]

It runs the portal exactly as in production (as the service account ``hpcportal``,
acting as alice through sudo and the run-as helper), then in one run submits
``--jobs`` held jobs with bare ``sbatch`` as alice (``runuser -u alice -- sbatch``)
and ``--jobs`` through ``POST /api/v1/jobs``, interleaved so both see the same
cluster, and prints p50/p95 of each and the difference. Target: portal p95 <=
sbatch p95 + 150 ms. The held jobs are cancelled at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcportal.devcluster import DevCluster  # noqa: E402
from tests.integration.service_portal import HELPER, service_portal  # noqa: E402

SCRIPT = "#!/bin/bash\ntrue\n"
NAME = "bench-submit"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bare_sbatch(conf: Path) -> float:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": str(conf)}
    started = time.perf_counter()
    subprocess.run(
        ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "--hold", "-J", NAME,
         "--chdir=/home/alice", "-o", "/dev/null"],
        input=SCRIPT, text=True, env=env, capture_output=True, check=True, timeout=60, cwd="/tmp",
    )  # fmt: skip
    return time.perf_counter() - started


def helper_call() -> float:
    """One bare call through the boundary: the service account runs the helper as alice."""
    started = time.perf_counter()
    subprocess.run(
        ["runuser", "-u", "hpcportal", "--", "sudo", "-n", "-u", "alice", str(HELPER)],
        input='{"v": 1, "op": "list", "root": "/home/alice", "entries": false}\n', text=True,
        capture_output=True, check=True, timeout=60, cwd="/tmp",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    return time.perf_counter() - started


def portal_submit(client: httpx.Client, headers: dict[str, str]) -> float:
    body = {"script": "#!/bin/bash\n#SBATCH --hold\ntrue\n", "name": NAME, "output": "/dev/null"}
    started = time.perf_counter()
    r = client.post("/api/v1/jobs", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    if r.status_code != 201:
        raise SystemExit(f"portal submit failed: {r.status_code} {r.text}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    conf = cluster.slurm_conf
    workdir = Path(tempfile.mkdtemp(prefix="hpcportal-bench-", dir="/tmp"))
    workdir.chmod(0o755)
    bare: list[float] = []
    ours: list[float] = []
    helper: list[float] = []
    try:
        with service_portal(str(conf), workdir) as portal, portal.client() as client:
            headers = portal.login("alice")
            portal_submit(client, headers)  # warm-up: first request, first sudo
            bare_sbatch(conf)
            for _ in range(args.jobs):
                bare.append(bare_sbatch(conf))
                ours.append(portal_submit(client, headers))
                helper.append(helper_call())
    finally:
        env = {"PATH": os.environ["PATH"], "SLURM_CONF": str(conf)}
        subprocess.run(["scancel", "-n", NAME], env=env, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    b50, b95 = percentile(bare, 0.5) * 1000, percentile(bare, 0.95) * 1000
    p50, p95 = percentile(ours, 0.5) * 1000, percentile(ours, 0.95) * 1000
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {args.jobs} submissions each")
    print(f"bare sbatch as alice:  p50 {b50:.1f} ms, p95 {b95:.1f} ms")
    print(f"portal POST /jobs:     p50 {p50:.1f} ms, p95 {p95:.1f} ms (as hpcportal via sudo)")
    h50, h95 = percentile(helper, 0.5) * 1000, percentile(helper, 0.95) * 1000
    print(f"one run-as call (runuser+sudo+helper stat): p50 {h50:.1f} ms, p95 {h95:.1f} ms")
    print(
        f"difference p95: {p95 - b95:+.1f} ms (target <= +150 ms); "
        f"ratio p50 {p50 / b50:.2f}, mean {statistics.mean(ours) / statistics.mean(bare):.2f}"
    )


if __name__ == "__main__":
    main()
