"""Benchmark shared monitoring queries: what N people watching one job cost Prometheus.

Run as root with the dev cluster up (``hpcportal dev-cluster up``)::

    .venv/bin/python bench/monitoring.py [--clients 1,50] [--seconds 30] [--refresh 5]

It starts Debian's Prometheus and node exporter on loopback (``tests/real_prometheus``:
one node exporter scraped as each dev-cluster node, the DCGM stand-in for gpu001's
GPUs, a 1 s scrape interval) and a portal in its own process (``hpcportal serve``,
``HPCPORTAL_PROMETHEUS_URL`` set, panel step and share time = ``--refresh``), submits
one GPU job as alice and, for each client count in ``--clients`` (1 first: the
baseline, in the same run):

1. starts that many clients, each with alice's token, each refreshing the job page's
   data every ``--refresh`` seconds (the first at a random moment within a refresh):
   the job's panels (CPU busy, memory, load, network received, GPU utilisation) asked
   at once, as the page would;
2. counts the range queries Prometheus served meanwhile (its own
   ``prometheus_http_requests_total{handler="/api/v1/query_range"}``) and those the
   portal sent (``hpcportal_prometheus_requests_total`` in its ``/metrics``);
3. prints both, per refresh period and per page refresh, what they would be without
   sharing (one query per panel asked), the p50 and p95 of one refresh (all panels
   answered), and the ratios of the last count to the first. A single client may cost
   less than one query per panel and period: when two of its refreshes fall within
   one step, the second is answered from the shared answer.

Target: the queries Prometheus serves do not grow with the clients (ratio ~1); p95 at
50 clients within a few hundred ms. Everything is on 127.0.0.1; the job is cancelled
and Prometheus and the portal stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from portal_process import free_port, slurm_env, start_portal

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcportal.devcluster import DevCluster  # noqa: E402
from tests.real_prometheus import GpuStandIn, RealPrometheus, real_prometheus  # noqa: E402

PANELS = ("cpu_busy", "memory_used", "load", "network_rx", "gpu_util")
NODES = ["node001", "node002", "node003", "node004", "gpu001", "viz-node001"]


@dataclass
class Phase:
    clients: int
    seconds: float
    prometheus_queries: float
    portal_queries: float
    refreshes: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def metric(text: str, name: str, must: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and must in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def counts(prom: RealPrometheus, base: str) -> tuple[float, float]:
    """(range queries Prometheus served, range queries the portal sent)."""
    served = metric(httpx.get(f"{prom.url}/metrics", timeout=10).text,
                    "prometheus_http_requests_total", 'handler="/api/v1/query_range"')  # fmt: skip
    sent = metric(httpx.get(f"{base}/metrics", timeout=10).text,
                  "hpcportal_prometheus_requests_total", 'endpoint="query_range"')  # fmt: skip
    return served, sent


async def client(
    http: httpx.AsyncClient, job: int, token: str, until: float, refresh: float, phase: Phase
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    await asyncio.sleep(random.uniform(0, refresh))
    while time.monotonic() < until:
        began = time.monotonic()
        answers = await asyncio.gather(
            *(http.get(f"/api/v1/monitoring/jobs/{job}/panels/{p}", headers=headers)
              for p in PANELS),
            return_exceptions=True,
        )  # fmt: skip
        phase.latencies.append(time.monotonic() - began)
        phase.refreshes += 1
        phase.errors += sum(
            1 for a in answers if isinstance(a, BaseException) or a.status_code != 200
        )
        await asyncio.sleep(max(0.0, refresh - (time.monotonic() - began)))


async def run_phase(
    base: str, prom: RealPrometheus, job: int, token: str, count: int, args: argparse.Namespace
) -> Phase:
    before = await asyncio.to_thread(counts, prom, base)
    phase = Phase(count, args.seconds, 0, 0, 0)
    began = time.monotonic()
    until = began + args.seconds
    limits = httpx.Limits(max_connections=count * len(PANELS) + 10)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        await asyncio.gather(
            *(client(http, job, token, until, args.refresh, phase) for _ in range(count))
        )
    after = await asyncio.to_thread(counts, prom, base)
    phase.seconds = time.monotonic() - began  # the last refreshes end after ``until``
    phase.prometheus_queries = after[0] - before[0]
    phase.portal_queries = after[1] - before[1]
    return phase


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(p: Phase, refresh: float) -> str:
    periods = p.seconds / refresh
    return (
        f"{p.clients:4d} clients: {p.refreshes} page refreshes ({len(PANELS)} panels each), "
        f"{p.errors} errors\n"
        f"      range queries served by Prometheus: {p.prometheus_queries:.0f} "
        f"in {p.seconds:.1f} s ({p.prometheus_queries / periods:.1f} per refresh period "
        f"of {refresh:g} s for {len(PANELS)} panels, "
        f"{p.prometheus_queries / max(p.refreshes, 1):.2f} per page refresh); "
        f"sent by the portal: {p.portal_queries:.0f} (one per panel asked: "
        f"{p.refreshes * len(PANELS)})\n"
        f"      page data: p50 {percentile(p.latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(p.latencies, 0.95) * 1000:.0f} ms, "
        f"max {max(p.latencies, default=float('nan')) * 1000:.0f} ms"
    )


def submit_gpu_job(conf: Path) -> int:
    out = subprocess.run(
        ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "--chdir=/home/alice",
         "-o", "/dev/null", "-p", "gpu", "--gres=gpu:1", "-J", "bench-monitoring",
         "--wrap", "sleep 900"],
        env=slurm_env(conf), check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    job = int(out.strip().split(";")[0])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", str(job), "-o", "%T"],
            env=slurm_env(conf), capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        if state == "RUNNING":
            return job
        time.sleep(1)
    raise SystemExit(f"job {job} did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 50])  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--refresh", type=float, default=5.0, help="page refresh period (s)")
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    if max(args.clients) > 500 or not 5 <= args.seconds <= 600 or not 1 <= args.refresh <= 60:
        raise SystemExit("bounded: at most 500 clients, --seconds 5..600, --refresh 1..60")
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    conf = cluster.slurm_conf
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; cpus: {os.cpu_count()}; "
          f"{args.seconds:g} s per phase; page refresh every {args.refresh:g} s; "
          f"panels: {', '.join(PANELS)}", flush=True)  # fmt: skip
    gpu = GpuStandIn(hostname="gpu001", gpus=2)
    with real_prometheus(NODES, gpu) as prom, tempfile.TemporaryDirectory() as tmpdir:
        os.environ.update({
            "HPCPORTAL_PROMETHEUS_URL": prom.url,
            "HPCPORTAL_PROMETHEUS_MIN_STEP": str(args.refresh),
            "HPCPORTAL_PROMETHEUS_CACHE_SECONDS": str(args.refresh),
        })  # fmt: skip
        portal = start_portal(conf, port, Path(tmpdir), log_file=Path(tmpdir) / "portal.log")
        job = submit_gpu_job(conf)
        try:
            gpu.jobs[0], gpu.util[0] = str(job), 60.0
            prom.wait_for(f'DCGM_FI_DEV_GPU_UTIL{{hpc_job="{job}"}}')
            token = httpx.post(f"{base}/api/v1/auth/token",
                               data={"username": "alice", "password": "alice-demo"},
                               timeout=30).json()["access_token"]  # fmt: skip
            time.sleep(args.refresh)  # the job has a first step of history
            for panel in PANELS:  # warm up: the catalog read, the first connections
                httpx.get(f"{base}/api/v1/monitoring/jobs/{job}/panels/{panel}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
            phases = []
            for count in args.clients:
                phase = asyncio.run(run_phase(base, prom, job, token, count, args))
                phases.append(phase)
                print(report(phase, args.refresh), flush=True)
            first, last = phases[0], phases[-1]

            def rate(p: Phase) -> float:
                return p.prometheus_queries / p.seconds

            print(f"ratio {last.clients}:{first.clients} clients: Prometheus range queries "
                  f"per second {rate(last) / max(rate(first), 1e-9):.2f}, "
                  f"page data p95 {percentile(last.latencies, 0.95) / max(percentile(first.latencies, 0.95), 1e-9):.2f}")  # noqa: E501  # fmt: skip
        finally:
            subprocess.run(["scancel", str(job)], env=slurm_env(conf), check=False, timeout=60)
            portal.terminate()
            portal.wait(timeout=30)


if __name__ == "__main__":
    main()
