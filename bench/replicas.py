"""Benchmark several replicas against one: Slurm's load and read latency through HAProxy.

Run as root with the dev cluster up and PostgreSQL reachable (the test role of
``HPCPORTAL_TEST_POSTGRES_URL``)::

    .venv/bin/python bench/replicas.py [--seconds 20] [--clients 50]

In one run it starts, on loopback, a Redis of its own, a fresh PostgreSQL database,
HAProxy with the configuration ``hpcportal cluster render`` writes, and first one, then
three ``hpcportal serve`` replicas (``tests/integration/replica_group.py``), and
measures for each:

(a) the Slurm commands every replica ran (``hpcportal_slurm_calls_total``, counted at
    each replica's executor) per snapshot refresh of the leader, over ``--seconds``
    with no client load: the number must not grow with replicas (followers run none);
(b) ``GET /api/v1/jobs?limit=100`` latency p50/p95 through HAProxy with ``--clients``
    concurrent clients (``wrk``), and the Slurm commands per refresh during that load;
(c) with three replicas, the leader killed (``kill -9``): seconds until another
    replica says it leads (``/ready``), against ``leader_lease_seconds``.

It prints each figure and the ratios 3 replicas : 1 replica (the baseline of the same
run). On a two-CPU machine three replicas share the CPUs with HAProxy, wrk and Slurm,
so their latency shows the cost of the hop, not a gain.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcportal.devcluster import DevCluster  # noqa: E402
from tests.integration.replica_group import ReplicaGroup, replica_group  # noqa: E402

WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT p50_ms=%.3f p95_ms=%.3f requests=%d errors=%d\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def counts(group: ReplicaGroup) -> tuple[float, float]:
    """(Slurm commands of every replica, the leader's successful refreshes) now."""
    leader = group.leader()
    if leader is None:
        raise SystemExit("no replica says it leads")
    calls = sum(r.slurm_calls() for r in group.replicas if r.alive())
    return calls, leader.refreshes()


def per_refresh(group: ReplicaGroup, seconds: float) -> tuple[float, float, float]:
    """Slurm commands per leader refresh over ``seconds`` (and the two counts)."""
    calls0, refreshes0 = counts(group)
    time.sleep(seconds)
    calls1, refreshes1 = counts(group)
    refreshes = refreshes1 - refreshes0
    if refreshes <= 0:
        raise SystemExit("the leader did not refresh during the measurement")
    return (calls1 - calls0) / refreshes, calls1 - calls0, refreshes


def run_wrk(url: str, token: str, clients: int, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds}s", "--timeout", "10s",
         "-s", str(script), "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    match = re.search(r"RESULT (.*)", out)
    assert match, out
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def measure(conf: str, replicas: int, seconds: int, clients: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "report.lua"
        script.write_text(WRK_SCRIPT)
        with replica_group(tmp, conf, count=replicas) as group:
            time.sleep(3)  # followers have installed the leader's snapshots
            idle, idle_calls, idle_refreshes = per_refresh(group, seconds)
            token = group.login("alice")
            calls0, refreshes0 = counts(group)
            stats = run_wrk(f"{group.url}/api/v1/jobs?limit=100", token, clients, seconds, script)
            calls1, refreshes1 = counts(group)
            loaded = (calls1 - calls0) / max(1.0, refreshes1 - refreshes0)
            return {
                "replicas": replicas, "idle_per_refresh": idle, "idle_calls": idle_calls,
                "idle_refreshes": idle_refreshes, "loaded_per_refresh": loaded, **stats,
                "takeover_s": takeover(group) if replicas > 1 else float("nan"),
            }  # fmt: skip


def takeover(group: ReplicaGroup) -> float:
    """Seconds from ``kill -9`` of the leader until another replica says it leads."""
    leader = group.leader()
    assert leader is not None
    leader.kill()
    started = time.monotonic()
    while time.monotonic() - started < 60:
        if group.leader() is not None:
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit("no new leader within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of each phase")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        raise SystemExit("the dev cluster is not up (hpcportal dev-cluster up)")
    conf = str(cluster.slurm_conf)
    one = measure(conf, 1, args.seconds, args.clients)
    three = measure(conf, 3, args.seconds, args.clients)
    print(f"{'replicas':>8} {'slurm/refresh idle':>19} {'slurm/refresh load':>19} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'errors':>6}")  # fmt: skip
    for row in (one, three):
        print(
            f"{row['replicas']:>8.0f} {row['idle_per_refresh']:>19.2f} "
            f"{row['loaded_per_refresh']:>19.2f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
            f"{row['requests'] / args.seconds:>8.0f} {row['errors']:>6.0f}"
        )
    print(
        f"Slurm commands per refresh, 3 replicas : 1 = "
        f"{three['idle_per_refresh'] / one['idle_per_refresh']:.2f} (idle), "
        f"{three['loaded_per_refresh'] / one['loaded_per_refresh']:.2f} (under load)"
    )
    print(
        f"read p95 through HAProxy at {args.clients} clients, 3 replicas : 1 = "
        f"{three['p95_ms'] / one['p95_ms']:.2f}"
    )
    print(f"new leader {three['takeover_s']:.1f} s after kill -9 of the leader (lease 6 s)")


if __name__ == "__main__":
    main()
