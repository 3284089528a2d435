"""Actions show at once, output follows continuously, against the live dev cluster.

The portal refreshes its snapshot only every 10 s here (the default), so a state
change that reaches a socket within a second came from the read the portal asks for
right after its own action, not from the regular refresh. Also: the output stream as
Server-Sent Events (headers, keep-alive, ``id:`` and ``Last-Event-ID``), and twenty
watchers of one job's output costing one follower and no extra reads.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration import slurm_cli
from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory
from tests.integration.test_live import LiveClient, job_states, log_in, open_socket

#: What a person must see within this long after the portal acted or a job wrote.
WITHIN = 1.0


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    return make_portal(refresh_interval=10.0, stale_after=60.0, sse_keepalive_seconds=1.0)


def metric(portal: RunningPortal, name: str, labels: str = "") -> float:
    text = httpx.get(f"{portal.url}/metrics", timeout=10).text
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def reads_now(portal: RunningPortal) -> tuple[float, float]:
    """The output follower's reads and the run-as boundary's reads, from one scrape."""
    text = httpx.get(f"{portal.url}/metrics", timeout=10).text

    def value(pattern: str) -> float:
        found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return (value(re.escape("hpcportal_live_output_reads_total")),
            value(re.escape('hpcportal_runas_seconds_count{op="read"}')))  # fmt: skip


def heard(client: LiveClient, job_id: str, status: str, since: float) -> float:
    """Seconds from ``since`` until ``client`` heard of ``job_id`` in ``status``."""

    def arrival(c: LiveClient) -> float | None:
        for at, message in list(c.messages):
            if message.get("type") != "jobs" or at < since:
                continue
            if any(j["id"] == job_id and j["status"] == status for j in message["changed"]):
                return at - since
        return None

    client.wait_for(lambda c: arrival(c) is not None, f"job {job_id} {status}")
    seconds = arrival(client)
    assert seconds is not None
    return seconds


def test_actions_reach_an_open_socket_within_a_second(portal: RunningPortal, conf: str) -> None:
    login = log_in(portal, "alice", "alice-demo")
    alice = open_socket(portal, {**login.cookie_header, "Origin": portal.url})
    alice.send({"type": "subscribe", "channels": ["jobs"]})
    measured: dict[str, float] = {}
    asked_to_heard: dict[str, float] = {}
    held = slurm_cli.sbatch(conf, "alice", "--hold", "--begin=now+1hour", "--wrap", "sleep 60")
    job_id = str(held)
    try:
        with portal.client(headers=login.bearer) as c:
            # The regular refresh (every 10 s) brings the job; then only actions.
            alice.wait_for(lambda cl: bool(job_states(cl, job_id)), "the held job", 30)
            assert c.get(f"/api/v1/jobs/{job_id}").status_code == 200  # a page was open

            def act(label: str, action: str, target: str, status: str) -> None:
                asked = time.monotonic()
                r = c.post(f"/api/v1/jobs/{target}/{action}")
                answered = time.monotonic()
                assert r.status_code == 200, r.text
                asked_to_heard[label] = heard(alice, target, status, asked)
                measured[label] = asked_to_heard[label] - (answered - asked)

            act("release", "release", job_id, "queued")
            act("hold", "hold", job_id, "queued_held")
            act("cancel pending", "cancel", job_id, "cancelled")
            r = c.post("/api/v1/jobs", json={"script": "#!/bin/bash\nsleep 120\n"})
            answered = time.monotonic()  # sbatch has answered: the job exists
            assert r.status_code == 201, r.text
            running = str(r.json()["job_id"])
            measured["submit"] = heard(alice, running, "queued", answered)
            slurm_cli.wait_running(conf, int(running))
            heard(alice, running, "running", 0.0)
            act("cancel running", "cancel", running, "cancelled")
    finally:
        slurm_cli.scancel(conf, held, missing_ok=True)
        alice.close()
    print("seconds from the request to the socket:", asked_to_heard)
    print("seconds from the portal's answer to the socket:", measured)
    assert all(seconds < WITHIN for seconds in measured.values()), measured


@dataclass
class SSE:
    """A raw event stream read by a thread: every line with its arrival time."""

    response: httpx.Response
    lines: list[tuple[float, str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                self.lines.append((time.monotonic(), line))
        except httpx.HTTPError:
            pass
        finally:
            self.done.set()

    def events(self) -> list[dict[str, Any]]:
        """Parsed events: {"id", "event", "data"} (comments left out)."""
        found: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        for _, line in list(self.lines):
            if not line:
                if "event" in current:
                    found.append(current)
                current = {}
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(": ")
                current[name] = json.loads(value) if name == "data" else value
        return found

    def outputs(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == "output"]

    def wait(self, condition: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert time.monotonic() < deadline, f"no {what} within {timeout} s: {self.lines}"
            time.sleep(0.05)


def open_stream(
    client: httpx.Client, job_id: str, headers: dict[str, str], **extra: str
) -> tuple[Any, SSE]:
    manager = client.stream(
        "GET", f"/api/v1/jobs/{job_id}/output/stream", headers={**headers, **extra}
    )
    response = manager.__enter__()
    return manager, SSE(response)


def test_the_output_stream_is_proper_server_sent_events(portal: RunningPortal, conf: str) -> None:
    headers = portal.login("alice")
    script = "#!/bin/bash\nfor i in $(seq 1 10); do echo line$i; sleep 0.7; done; sleep 2.5\n"
    with portal.client() as c:
        r = c.post("/api/v1/jobs", headers=headers, json={"script": script})
        assert r.status_code == 201, r.text
        job_id = str(r.json()["job_id"])
        first_manager, first = open_stream(c, job_id, headers)
        try:
            answer = first.response
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert answer.headers["cache-control"] == "no-cache"
            assert answer.headers["x-accel-buffering"] == "no"
            first.wait(lambda s: len(s.outputs()) >= 2, "two output events")
        finally:
            first_manager.__exit__(None, None, None)
        seen = first.outputs()
        for event in seen:
            assert int(event["id"]) == event["data"]["next_offset"]
        resume_at = seen[1]["id"]

        # A browser reconnecting sends the last id back: the stream goes on from there.
        second_manager, second = open_stream(c, job_id, headers, **{"Last-Event-ID": resume_at})
        try:
            second.wait(lambda s: any(e["event"] == "end" for e in s.events()), "the end")
        finally:
            second_manager.__exit__(None, None, None)
    rest = second.outputs()
    assert rest, (resume_at, second.lines)
    assert rest[0]["data"]["offset"] == int(resume_at)
    offsets = [e["data"]["offset"] for e in rest]
    assert offsets == sorted(offsets)
    text = "".join(e["data"]["data"] for e in seen[:2]) + "".join(e["data"]["data"] for e in rest)
    assert text == "".join(f"line{i}\n" for i in range(1, 11))
    end = next(e for e in second.events() if e["event"] == "end")
    assert int(end["id"]) == end["data"]["next_offset"] == len(text)
    # The quiet 2.5 s at the end were kept open with a comment.
    assert any(line == ": keep-alive" for _, line in second.lines), second.lines
    # Lines arrive as they are written, not in bursts: 0.7 s apart, each within a second.
    arrivals = [at for at, line in second.lines if line.startswith("event: output")]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert gaps and max(gaps) < 0.7 + WITHIN, gaps


def test_a_bad_last_event_id_is_a_422(portal: RunningPortal) -> None:
    headers = portal.login("alice")
    with portal.client() as c:
        r = c.get("/api/v1/jobs/1/output/stream", headers={**headers, "Last-Event-ID": "x1"})
    assert r.status_code == 422 and "Last-Event-ID" in r.json()["detail"]


def test_twenty_watchers_cost_one_follower(portal: RunningPortal, conf: str) -> None:
    login = log_in(portal, "alice", "alice-demo")
    headers = login.bearer
    script = "#!/bin/bash\nfor i in $(seq 1 60); do echo tick$i; sleep 0.5; done\n"
    sockets: list[LiveClient] = []
    streams: list[tuple[Any, SSE]] = []
    with portal.client() as c:
        r = c.post("/api/v1/jobs", headers=headers, json={"script": script})
        assert r.status_code == 201, r.text
        job_id = str(r.json()["job_id"])
        slurm_cli.wait_running(conf, int(job_id))
        followed_before = metric(portal, "hpcportal_live_output_followers")
        try:
            for _ in range(10):
                ws = open_socket(portal, {**login.cookie_header, "Origin": portal.url})
                ws.send({"type": "subscribe", "channels": [f"job_output:{job_id}"]})
                sockets.append(ws)
                streams.append(open_stream(c, job_id, headers))
            for ws in sockets:
                ws.wait_for(lambda cl: len(cl.of_type("job_output")) >= 2, "output")
            for _, sse in streams:
                sse.wait(lambda s: len(s.outputs()) >= 2, "output")
            assert metric(portal, "hpcportal_live_output_followers") == followed_before + 1
            reads, runas = reads_now(portal)
            time.sleep(4.0)
            reads_after, runas_after = reads_now(portal)
            follower_reads, runas_reads = reads_after - reads, runas_after - runas
            # One read per poll (0.5 s) for all twenty, and nobody else reading. The two
            # counters move at the start and the end of the same read, so one read in
            # flight at a scrape counts in one of them only.
            print(f"in 4 s: {follower_reads} follower reads, {runas_reads} run-as reads")
            assert 4 <= follower_reads <= 4 / portal.settings.live_output_poll_seconds + 2
            assert abs(runas_reads - follower_reads) <= 1
            # Every watcher got every line, in order.
            full = "".join(m["data"] for m in sockets[0].of_type("job_output"))
            assert re.fullmatch(r"(tick\d+\n)+", full) and full.startswith("tick1\n")
            for _, sse in streams:
                got = "".join(e["data"]["data"] for e in sse.outputs())
                assert got.startswith("tick1\n") and got in full + "".join(
                    m["data"] for m in sockets[0].of_type("job_output")[-3:]
                )
        finally:
            for ws in sockets:
                ws.close()
            for manager, _ in streams:
                manager.__exit__(None, None, None)
            slurm_cli.scancel(conf, int(job_id), missing_ok=True)
    # The last watcher leaving stops the follower (a stream notices within a second).
    deadline = time.monotonic() + 5
    while metric(portal, "hpcportal_live_output_followers") != followed_before:
        assert time.monotonic() < deadline, "the follower outlived its watchers"
        time.sleep(0.2)


def test_a_burst_of_actions_costs_a_bounded_number_of_squeue_calls(
    portal: RunningPortal, conf: str
) -> None:
    """Forty holds and releases from eight clients at once: one squeue --jobs per gap
    (0.5 s) at most, however many actions, plus the regular refresh."""
    jobs = [
        slurm_cli.sbatch(conf, "alice", "--hold", "--begin=now+1hour", "--wrap", "sleep 60")
        for _ in range(10)
    ]
    headers = portal.login("alice")
    calls = portal.services.snapshot.adapter.executor.calls
    soon = portal.services.snapshot.soon
    try:
        portal.wait_for_generation(portal.services.snapshot.health().generation)

        def act(job_id: int) -> None:
            with portal.client(headers=headers) as c:
                for action in ("release", "hold", "release", "hold"):
                    assert c.post(f"/api/v1/jobs/{job_id}/{action}").status_code == 200

        before, reads_before = calls["squeue"], soon.reads
        started = time.monotonic()
        threads = [threading.Thread(target=act, args=(j,)) for j in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        time.sleep(1.0)  # the last reads and their follow-ups
        took = time.monotonic() - started
        squeues, reads = calls["squeue"] - before, soon.reads - reads_before
    finally:
        slurm_cli.scancel(conf, *jobs, missing_ok=True)
    gap = portal.settings.refresh_soon_min_gap
    full = took / portal.settings.refresh_interval + 1
    print(f"40 actions in {took:.1f} s: {reads} reads after actions, {squeues} squeue calls")
    assert 1 <= reads <= took / gap + 1, (reads, took)
    assert squeues <= reads + full, (squeues, reads, took)
