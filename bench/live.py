"""Benchmark live updates: delay from a job state change to every WebSocket client.

Run as root with the dev cluster up (``hpcportal dev-cluster up``)::

    .venv/bin/python bench/live.py [--clients 20,200] [--jobs 8] [--job-seconds 3]

It starts a portal in its own process (``hpcportal serve``, a temporary SQLite
database, ``HPCPORTAL_REFRESH_INTERVAL=1``), logs in alice, bob, dave and carol, and
for each client count in ``--clients`` (in one run):

1. connects that many WebSocket clients, spread over the four users (half by the
   session cookie, half by a bearer token), each subscribed to ``jobs``;
2. submits ``--jobs`` held jobs (as the four users), releases them one by one at
   irregular intervals, and lets them run ``--job-seconds`` and finish, while a
   thread polls ``squeue`` every 0.1 s and records when each job was first seen
   PENDING, RUNNING and COMPLETED;
3. records when each client first received each of those states, and prints p50 and
   p95 of (client time - squeue time) over every client and state change, and
4. the Slurm commands the portal ran in the phase (``hpcportal_slurm_calls_total``
   from its ``/metrics``) against its refreshes in the same time.

Target: p95 <= refresh interval + 1 s; Slurm commands independent of client count.
Everything talks to 127.0.0.1; the jobs are cancelled at the end, the portal stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from portal_process import free_port, slurm_env, start_portal
from websockets.asyncio.client import ClientConnection, connect

from hpcportal.devcluster import DevCluster

REPO = Path(__file__).resolve().parent.parent
USERS = {"alice": "alice-demo", "bob": "bob-demo", "dave": "dave-demo", "carol": "carol-demo"}
JOB_NAME = "bench-live"
STATES = ("PENDING", "RUNNING", "COMPLETED")
PHASE_TIMEOUT = 180.0


# --- the portal's metrics (it runs in its own process: portal_process) ---------------


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def counters(base: str) -> tuple[float, float]:
    """(Slurm commands, refreshes) so far, read just after a refresh completed."""
    text = httpx.get(f"{base}/metrics").text
    seen = metric(text, "hpcportal_snapshot_refreshes_total")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics").text
        if metric(text, "hpcportal_snapshot_refreshes_total") > seen:
            break
        time.sleep(0.02)
    return (
        metric(text, "hpcportal_slurm_calls_total"),
        metric(text, "hpcportal_snapshot_refreshes_total"),
    )


# --- the cluster side -----------------------------------------------------------------------


class SqueuePoller(threading.Thread):
    """When each bench job was first seen in each state, polling ``squeue`` tightly."""

    def __init__(self, conf: Path) -> None:
        super().__init__(daemon=True)
        self.env = slurm_env(conf)
        self.first: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.last: dict[str, str] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            out = subprocess.run(
                ["squeue", "--all", "--states=all", "-h", "-n", JOB_NAME, "-o", "%i %T"],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            ).stdout
            now = time.time()
            for line in out.splitlines():
                job_id, _, state = line.strip().partition(" ")
                self.first.setdefault((job_id, state), now)
                self.last[job_id] = state
            time.sleep(0.1)


def submit_held(conf: Path, user: str, seconds: float) -> str:
    out = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "--hold", "-J", JOB_NAME,
         "--mem=10", "-t", "5", f"--chdir=/home/{user}", "-o", "/dev/null",
         "--wrap", f"sleep {seconds}"],
        env=slurm_env(conf),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/tmp",
    ).stdout  # fmt: skip
    return out.strip().split(";")[0]


def scontrol(conf: Path, *args: str) -> None:
    subprocess.run(["scontrol", *args], env=slurm_env(conf), check=True, timeout=60)


# --- the clients ------------------------------------------------------------------------------


@dataclass
class Client:
    ws: ClientConnection
    user: str
    first: dict[tuple[str, str], float] = field(default_factory=dict)
    messages: int = 0

    async def read(self, wanted: set[str]) -> None:
        async for text in self.ws:
            now = time.time()
            message = json.loads(text)
            self.messages += 1
            if message.get("type") != "jobs":
                continue
            for job in message["changed"]:
                if job["id"] in wanted:
                    self.first.setdefault((job["id"], job["state"]), now)


async def connect_clients(url: str, logins: dict[str, dict[str, str]], count: int) -> list[Client]:
    users = list(logins)

    async def one(i: int) -> Client:
        user = users[i % len(users)]
        login = logins[user]
        headers = (
            {"Cookie": f"hpcportal_session={login['token']}"}
            if i % 2
            else {"Authorization": f"Bearer {login['token']}"}
        )
        ws = await connect(
            url, additional_headers=headers, proxy=None, max_size=None, open_timeout=30
        )
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["user"] == user, hello
        await ws.send(json.dumps({"type": "subscribe", "channels": ["jobs"]}))
        return Client(ws, user)

    clients: list[Client] = []
    for start in range(0, count, 50):  # in batches, not 200 handshakes at once
        clients += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
    return clients


@dataclass
class PhaseResult:
    clients: int
    delays: list[float]
    by_state: dict[str, list[float]]
    from_release: list[float]
    missed: int
    slurm_calls: float
    refreshes: float
    messages: int
    dropped: int


async def phase(
    base: str, conf: Path, logins: dict[str, dict[str, str]], count: int, args: argparse.Namespace
) -> PhaseResult:
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    clients = await connect_clients(url, logins, count)
    calls_before, refreshes_before = await asyncio.to_thread(counters, base)
    poller = SqueuePoller(conf)
    poller.start()
    users = list(USERS)
    job_ids: list[str] = []
    wanted: set[str] = set()
    released: dict[str, float] = {}
    readers = [asyncio.create_task(c.read(wanted)) for c in clients]
    try:
        for i in range(args.jobs):
            job_id = await asyncio.to_thread(submit_held, conf, users[i % 4], args.job_seconds)
            job_ids.append(job_id)
            wanted.add(job_id)
        await asyncio.sleep(2.0)
        gaps = random.Random(count)  # irregular gaps: changes fall anywhere in a refresh
        for job_id in job_ids:  # one change at a time
            released[job_id] = time.time()
            await asyncio.to_thread(scontrol, conf, "release", job_id)
            await asyncio.sleep(gaps.uniform(0.2, 0.9))
        deadline = time.monotonic() + PHASE_TIMEOUT
        while time.monotonic() < deadline:
            finished = all(poller.last.get(j) == "COMPLETED" for j in job_ids)
            delivered = all(
                (j, "COMPLETED") in c.first for c in clients for j in job_ids if not c.ws.close_code
            )
            if finished and delivered:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.interval + 0.5)
    finally:
        poller.stop.set()
        await asyncio.to_thread(poller.join, 10)
        if job_ids:
            subprocess.run(["scancel", *job_ids], env=slurm_env(conf), check=False, timeout=60)
    calls_after, refreshes_after = await asyncio.to_thread(counters, base)
    dropped = sum(1 for c in clients if c.ws.close_code is not None)
    for c in clients:
        await c.ws.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)

    delays: list[float] = []
    by_state: dict[str, list[float]] = {state: [] for state in STATES}
    missed = 0
    for c in clients:
        for job_id in job_ids:
            for state in STATES:
                seen_by_slurm = poller.first.get((job_id, state))
                got = c.first.get((job_id, state))
                if seen_by_slurm is None:
                    continue
                if got is None:
                    missed += 1  # the state lasted less than a refresh: never in a snapshot
                else:
                    delays.append(got - seen_by_slurm)
                    by_state[state].append(got - seen_by_slurm)
    from_release = [
        c.first[(j, "RUNNING")] - released[j]
        for c in clients
        for j in job_ids
        if (j, "RUNNING") in c.first and j in released
    ]
    return PhaseResult(
        from_release=from_release,
        clients=count,
        delays=delays,
        by_state=by_state,
        missed=missed,
        slurm_calls=calls_after - calls_before,
        refreshes=refreshes_after - refreshes_before,
        messages=sum(c.messages for c in clients),
        dropped=dropped,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def login_all(base: str) -> dict[str, dict[str, str]]:
    logins = {}
    for user, password in USERS.items():
        r = httpx.post(f"{base}/api/v1/auth/token", data={"username": user, "password": password})
        r.raise_for_status()
        logins[user] = {"token": r.json()["access_token"]}
    return logins


async def run(base: str, conf: Path, args: argparse.Namespace) -> list[PhaseResult]:
    logins = await asyncio.to_thread(login_all, base)
    results = []
    for count in args.clients:
        result = await phase(base, conf, logins, count, args)
        results.append(result)
        print(report(result, args.interval), flush=True)
    return results


def report(r: PhaseResult, interval: float) -> str:
    p50, p95 = percentile(r.delays, 0.50), percentile(r.delays, 0.95)
    verdict = "ok" if p95 <= interval + 1.0 else "OVER TARGET"
    per_refresh = r.slurm_calls / max(r.refreshes, 1)
    return (
        f"{r.clients:4d} clients: delay p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {max(r.delays, default=float('nan')) * 1000:.0f} ms over {len(r.delays)} deliveries "
        f"({r.missed} states shorter than a refresh, {r.dropped} clients dropped); "
        f"target p95 <= {(interval + 1) * 1000:.0f} ms: {verdict}\n"
        f"      Slurm commands: {r.slurm_calls:.0f} in {r.refreshes:.0f} refreshes "
        f"({per_refresh:.2f} per refresh); {r.messages} messages received\n"
        + "      by state: "
        + ", ".join(
            f"{state} p50 {percentile(d, 0.5) * 1000:.0f} / p95 {percentile(d, 0.95) * 1000:.0f} ms"
            for state, d in r.by_state.items()
        )
        + f"\n      RUNNING counted from issuing the release (Slurm's scheduling included): "
        f"p50 {percentile(r.from_release, 0.5) * 1000:.0f} / "
        f"p95 {percentile(r.from_release, 0.95) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clients", type=lambda s: [int(x) for x in s.split(",")], default=[20, 200]
    )
    parser.add_argument("--jobs", type=int, default=12, help="jobs per phase (held, released)")
    parser.add_argument("--job-seconds", type=float, default=3.0, help="how long each job runs")
    parser.add_argument("--interval", type=float, default=1.0, help="portal refresh interval")
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    if not 1 <= args.jobs <= 40 or max(args.clients) > 1000 or args.job_seconds > 60:
        raise SystemExit("bounded: --jobs 1..40, at most 1000 clients, --job-seconds <= 60")
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    conf = cluster.slurm_conf
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; cpus: {os.cpu_count()}; refresh "
        f"interval {args.interval} s; {args.jobs} jobs of {args.job_seconds} s per phase",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmpdir:
        portal = start_portal(conf, port, Path(tmpdir), interval=args.interval)
        try:
            results = asyncio.run(run(base, conf, args))
        finally:
            subprocess.run(["scancel", "-n", JOB_NAME], env=slurm_env(conf), check=False)
            portal.terminate()
            portal.wait(timeout=30)
    calls = {r.clients: r.slurm_calls / max(r.refreshes, 1) for r in results}
    print(f"Slurm commands per refresh by client count: {calls}")


if __name__ == "__main__":
    main()
