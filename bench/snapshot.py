"""Benchmark the shared snapshot against bare Slurm, on the live dev cluster.

Run as root with the dev cluster up (``hpcportal dev-cluster up``)::

    .venv/bin/python bench/snapshot.py [--jobs 10000] [--seconds 20]

It makes sure ``--jobs`` held jobs from alice, bob and dave are queued, then
measures in one run:

(a) a bare ``squeue --json --all`` against the portal's full refresh (the three
    Slurm commands plus parsing into models), and prints their ratio;
(b) ``GET /api/v1/jobs?limit=100`` latency p50/p95 with 1 and with 50 concurrent
    clients (``wrk`` on loopback against a portal in its own process);
(c) the Slurm commands the portal ran during (b), read from its ``/metrics``,
    against the number of refreshes in the same time.

The held jobs stay queued for the next run; ``--cleanup`` cancels them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from portal_process import slurm_env, start_portal

from hpcportal.config import Settings
from hpcportal.devcluster import DevCluster
from hpcportal.services.snapshot import SnapshotService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor

REPO = Path(__file__).resolve().parent.parent
USERS = ("alice", "bob", "dave")
JOB_NAME = "bench-held"
WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT p50_ms=%.3f p95_ms=%.3f requests=%d errors=%d\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def count_bench_jobs(conf: Path) -> int:
    out = subprocess.run(
        ["squeue", "--all", "-h", "-n", JOB_NAME, "-o", "%i"],
        env=slurm_env(conf),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return len(out.split())


def submit_held(conf: Path, user: str, count: int) -> None:
    """Submit ``count`` separate held jobs as ``user`` (separate jobs, not one array,
    because squeue lists a pending array as a single record)."""
    for _ in range(count):
        subprocess.run(
            [
                "runuser",
                "-u",
                user,
                "--",
                "sbatch",
                "--hold",
                "-J",
                JOB_NAME,
                "--mem=10",
                f"--chdir=/home/{user}",
                "-o",
                "/dev/null",
                "--wrap",
                "true",
            ],
            env=slurm_env(conf),
            capture_output=True,
            check=True,
            timeout=60,
            cwd="/tmp",
        )


def ensure_jobs(conf: Path, wanted: int) -> int:
    have = count_bench_jobs(conf)
    missing = wanted - have
    if missing > 0:
        print(f"submitting {missing} held jobs (have {have}) ...", flush=True)
        per_worker = [missing // 8 + (1 if i < missing % 8 else 0) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda ic: submit_held(conf, USERS[ic[0] % 3], ic[1]), enumerate(per_worker)
                )
            )
    return count_bench_jobs(conf)


def time_it(fn: object, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return times


def part_a(conf: Path, runs: int) -> tuple[float, float, float, float]:
    """Bare squeue vs the portal's full refresh, medians over ``runs``.

    Returns (bare, refresh, squeue+parse alone, first refresh). The first refresh
    builds every job model; later ones reuse the models of unchanged jobs, which is
    what a running portal does every interval.
    """
    env = slurm_env(conf)

    def bare() -> None:
        subprocess.run(
            ["squeue", "--json", "--all"], env=env, capture_output=True, check=True, timeout=300
        )

    settings = Settings(slurm_conf=conf, database_url="sqlite://")
    adapter = SlurmAdapter(SlurmExecutor.from_settings(settings))
    service = SnapshotService(adapter, settings)

    bare_t, refresh_t, jobs_t = [], [], []
    for _ in range(runs):  # interleave so both see the same cluster load
        bare_t += time_it(bare, 1)
        refresh_t += asyncio.run(refresh_runs_once(service))
        jobs_t += time_it(adapter.jobs, 1)
    return (
        statistics.median(bare_t),
        statistics.median(refresh_t),
        statistics.median(jobs_t),
        refresh_t[0],
    )


async def refresh_runs_once(service: SnapshotService) -> list[float]:
    started = time.perf_counter()
    snap = await service.refresh()
    elapsed = time.perf_counter() - started
    if snap is None or service.health().last_error:
        raise SystemExit(f"refresh failed: {service.health().last_error}")
    return [elapsed]


def metric(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_refresh(base: str) -> str:
    """Metrics read just after a refresh completed, so no refresh is half-counted."""
    seen = metric(httpx.get(f"{base}/metrics").text, "hpcportal_snapshot_refreshes_total")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics").text
        if metric(text, "hpcportal_snapshot_refreshes_total") > seen:
            return text
        time.sleep(0.02)
    raise SystemExit("no refresh completed within 120 s")


def run_wrk(url: str, token: str, clients: int, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1" if clients == 1 else "2",
            "-c",
            str(clients),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    assert match, out
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def part_bc(conf: Path, seconds: int) -> list[dict[str, float]]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    port = 18080
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "report.lua"
        script.write_text(WRK_SCRIPT)
        portal = start_portal(conf, port, tmp)
        try:
            token = httpx.post(
                f"{base}/api/v1/auth/token", data={"username": "alice", "password": "alice-demo"}
            ).json()["access_token"]
            url = f"{base}/api/v1/jobs?limit=100"
            results = []
            for clients in (1, 50):
                before = wait_for_refresh(base)
                stats = run_wrk(url, token, clients, seconds, script)
                after = wait_for_refresh(base)
                calls = sum(
                    metric(after, "hpcportal_slurm_calls_total", f'command="{c}"')
                    - metric(before, "hpcportal_slurm_calls_total", f'command="{c}"')
                    for c in ("squeue", "sinfo", "scontrol")
                )
                refreshes = metric(after, "hpcportal_snapshot_refreshes_total") - metric(
                    before, "hpcportal_snapshot_refreshes_total"
                )
                stats.update(clients=clients, slurm_calls=calls, refreshes=refreshes)
                results.append(stats)
            return results
        finally:
            portal.terminate()
            portal.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20, help="length of each load phase")
    parser.add_argument("--runs", type=int, default=5, help="repetitions for part (a)")
    parser.add_argument("--cleanup", action="store_true", help="cancel the held jobs and exit")
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    cluster = DevCluster(args.dir)
    conf = cluster.slurm_conf
    if args.cleanup:
        subprocess.run(["scancel", "-n", JOB_NAME], env=slurm_env(conf), check=True)
        return
    if not cluster.is_up():
        cluster.up()
    queued = ensure_jobs(conf, args.jobs)
    total = len(
        subprocess.run(
            ["squeue", "--all", "-h", "-o", "%i"],
            env=slurm_env(conf),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; jobs in squeue: {total} "
        f"({queued} held bench jobs); cpus: {os.cpu_count()}"
    )

    bare, refresh, jobs_only, cold = part_a(conf, args.runs)
    print(f"(a) bare squeue --json --all: {bare * 1000:.0f} ms (median of {args.runs})")
    print(
        f"    portal refresh (squeue+sinfo+scontrol, parsed): {refresh * 1000:.0f} ms;"
        f" squeue+parse alone: {jobs_only * 1000:.0f} ms"
    )
    print(f"    ratio refresh / bare squeue: {refresh / bare:.2f} (target <= 1.30)")
    print(f"    first refresh (every model built): {cold * 1000:.0f} ms, ratio {cold / bare:.2f}")

    for r in part_bc(conf, args.seconds):
        print(
            f"(b) {int(r['clients'])} client(s): GET /api/v1/jobs?limit=100 p50 "
            f"{r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, {int(r['requests'])} requests,"
            f" {int(r['errors'])} errors (target p95 <= 100 ms at 50)"
        )
        print(
            f"(c)   Slurm commands during it: {int(r['slurm_calls'])} in "
            f"{int(r['refreshes'])} refreshes ({r['slurm_calls'] / max(r['refreshes'], 1):.1f}"
            f" per refresh, whatever the clients)"
        )


if __name__ == "__main__":
    main()
