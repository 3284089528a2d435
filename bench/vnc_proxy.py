"""Benchmark the portal's VNC proxy against a direct connection to websockify.

Run as root with the dev cluster up (``hpcportal dev-cluster up``)::

    .venv/bin/python bench/vnc_proxy.py [--rounds 8] [--frames 25] [--pings 600]

It starts a portal in its own process (``hpcportal serve``, a temporary SQLite
database), logs alice in (PAM), launches a ``desktop`` session (TigerVNC's Xvnc and
websockify, a Slurm job of alice on ``viz-node001``, 1 GB, 1920x1080) and waits
until it is ready. Then it opens two RFB connections with the same small client
(``tests/integration/rfb_client.py``, over a WebSocket, Raw encoding, 32 bits a
pixel) and keeps both open for the whole run:

- **direct**: straight to the session's websockify, over the same mutual TLS the
  portal uses (its client certificate, the session's pinned certificate: websockify
  accepts nothing else), authenticating with the session's current full-control
  password (read from the portal's database just before and opened with the
  portal's key; the portal rotates it after each full-control connection through it,
  which is why this one is opened first: an open connection stays authenticated);
- **proxied**: ``/api/v1/sessions/{id}/vnc`` on the portal, which authenticates
  upstream itself and offers the client security type None.

In ``--rounds`` rounds, alternating which side goes first, each side measures

- **throughput**: ``--frames`` non-incremental FramebufferUpdateRequests of the
  whole screen, each answered by 8.3 MB of Raw pixels (MiB/s over the bytes read).
  The client counts the pixels and drops them; ``--keep-pixels`` copies them into
  its framebuffer as the test client does, which makes the client the bottleneck;
- **latency**: round trips of a non-incremental update request for a 1x1 region
  (answered by a 24-byte FramebufferUpdate), ``--pings`` in all per side.

It prints direct against proxied (throughput ratio, added p50/p95 latency) against
the targets (>= 80 % of direct throughput, <= 5 ms added p50 latency), and the CPU
time each process (Xvnc, websockify with the child serving the connection, the
portal, this client) spent per frame on each side, which shows where a difference
comes from. Everything talks to 127.0.0.1; the session is deleted (its job
cancelled, its folder removed) and the portal stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from portal_process import free_port, slurm_env, start_portal  # noqa: E402

from hpcportal.devcluster import DevCluster  # noqa: E402
from hpcportal.services.node_tls import node_tls_for  # noqa: E402
from hpcportal.services.secret_box import box_for  # noqa: E402
from tests.integration.rfb_client import (  # noqa: E402
    ENCODING_COPYRECT,
    ENCODING_DESKTOP_SIZE,
    ENCODING_RAW,
    Rect,
    RFBClient,
    RFBError,
    WebSocketTransport,
)
from tests.integration.service_portal import find_pid  # noqa: E402

MIB = 1 << 20
READY_SECONDS = 120.0
TARGET_RATIO = 0.80
TARGET_ADDED_P50_MS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


# --- the portal (in its own process: portal_process) -----------------------------------


def login(base: str) -> dict[str, str]:
    r = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": "alice", "password": "alice-demo"}
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@contextlib.contextmanager
def desktop_session(
    base: str, headers: dict[str, str], conf: Path, resolution: str
) -> Iterator[dict[str, Any]]:
    """A ready desktop session of alice; deleted (its job cancelled) afterwards."""
    client = httpx.Client(base_url=base, headers=headers, timeout=60)
    r = client.post(
        "/api/v1/sessions",
        json={"app_id": "desktop", "options": {"memory_gb": 1, "resolution": resolution}},
    )
    if r.status_code != 201:
        raise SystemExit(f"launch failed: {r.status_code} {r.text}")
    body: dict[str, Any] = r.json()
    sid, job_id = body["id"], body["job_id"]
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not body["ready"]:
            if body["state"] in ("failed", "completed", "cancelled"):
                raise SystemExit(f"the session ended: {body['state']}: {body.get('error')}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the session was not ready within {READY_SECONDS:.0f} s: {body}")
            time.sleep(0.5)
            body = client.get(f"/api/v1/sessions/{sid}").json()
        yield body
    finally:
        deleted = False
        with contextlib.suppress(httpx.HTTPError):
            deleted = client.delete(f"/api/v1/sessions/{sid}").status_code == 200
        if not deleted and job_id:
            subprocess.run(["scancel", str(job_id)], env=slurm_env(conf), check=False, timeout=60)
        client.close()
        if job_id:
            wait_job_gone(conf, int(job_id))
        shutil.rmtree(f"/home/alice/hpcportal/sessions/{sid}", ignore_errors=True)


def wait_job_gone(conf: Path, job_id: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"],
            env=slurm_env(conf),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.strip()
        if not out:
            return
        time.sleep(0.5)


def current_password(tmp: Path, session_id: str) -> tuple[str, ssl.SSLContext]:
    """The full-control password the portal holds now (it rotates it after each use),
    opened with the portal's key, and TLS as the portal connects (its client
    certificate, the session's pinned one): websockify accepts nothing else."""
    with contextlib.closing(sqlite3.connect(tmp / "bench.db")) as conn:
        row = conn.execute(
            "SELECT secret, server_cert FROM interactive_sessions WHERE id = ?", (session_id,)
        ).fetchone()
    if row is None or not row[0] or not row[1]:
        raise SystemExit("the session has no password in the portal's database")
    keys = tmp / "secrets"
    password = box_for(keys / "portal.key").open(
        str(row[0]), f"interactive_sessions:{session_id}:secret"
    )
    return password, node_tls_for(keys).context(str(row[1]))


# --- processes and their CPU time -----------------------------------------------------------


def process_with(*parts: bytes) -> int | None:
    """The process whose command line holds every one of ``parts`` as an argument."""
    return find_pid(
        lambda argv: all(
            any(part == arg or arg.endswith(b"/" + part) for arg in argv) for part in parts
        )
    )


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _own_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its live descendants (all threads;
    websockify serves each connection in a child it forks), or of this one for ``None``."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    tree = _children()
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _own_cpu(current)
        todo += tree.get(current, [])
    return total


# --- the RFB client -------------------------------------------------------------------------


class CountingTransport(WebSocketTransport):
    """The test client's WebSocket transport, counting the messages it receives."""

    messages = 0

    def recv(self, timeout: float) -> bytes:
        self.messages += 1
        return super().recv(timeout)


class CountingClient(RFBClient):
    """The test client; with ``keep_pixels`` false, pixels are counted and dropped
    instead of being copied (twice) into its framebuffer, so that the client is less
    of a bottleneck and the proxy's own cost shows more."""

    keep_pixels = True

    def _framebuffer_update(self) -> list[Rect]:
        if self.keep_pixels:
            return super()._framebuffer_update()
        self._read(1)
        (count,) = struct.unpack(">H", self._read(2))
        rects = []
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
            if encoding == ENCODING_RAW:
                self._skip(w * h * 4)
            elif encoding == ENCODING_COPYRECT:
                self._read(4)
            elif encoding == ENCODING_DESKTOP_SIZE:
                self.width, self.height = w, h
                self.framebuffer = bytearray(w * h * 4)
            else:
                raise RFBError(f"unexpected encoding {encoding}")
            rects.append(Rect(x, y, w, h, encoding))
        return rects

    def _skip(self, size: int) -> None:
        """Consume ``size`` bytes without keeping them."""
        while size > 0:
            if not self.buffer:
                data = self.transport.recv(self.timeout)
                self.bytes_received += len(data)
                if len(data) <= size:
                    size -= len(data)
                    continue
                self.buffer += data
            taken = min(size, len(self.buffer))
            del self.buffer[:taken]
            size -= taken

    @property
    def messages(self) -> int:
        return self.transport.messages if isinstance(self.transport, CountingTransport) else 0


def open_direct(port: int, password: str, tls: ssl.SSLContext) -> CountingClient:
    transport = CountingTransport(f"wss://127.0.0.1:{port}/", tls=tls)
    vnc = CountingClient(transport, timeout=30)
    vnc.handshake(password=password)
    return vnc


def open_proxied(base: str, session_id: str, headers: dict[str, str]) -> CountingClient:
    url = base.replace("http://", "ws://") + f"/api/v1/sessions/{session_id}/vnc"
    vnc = CountingClient(CountingTransport(url, headers={"Origin": base, **headers}), timeout=30)
    vnc.handshake(password=None)  # the portal authenticated upstream already
    return vnc


def full_frame(vnc: RFBClient) -> int:
    """One non-incremental update of the whole screen; the bytes it took."""
    before = vnc.bytes_received
    vnc.request_update(incremental=False)
    covered = 0
    while covered < vnc.width * vnc.height:
        rects = vnc.read_update(timeout=30)
        covered += sum(r.width * r.height for r in rects if r.encoding >= 0)
    return vnc.bytes_received - before


def round_trip(vnc: RFBClient) -> float | None:
    """Seconds from asking for the top-left pixel to having it; ``None`` if another
    update came in between (then the sample is dropped)."""
    started = time.perf_counter()
    vnc.request_update(incremental=False, region=(0, 0, 1, 1))
    rects = vnc.read_update(timeout=10)
    elapsed = time.perf_counter() - started
    if [(r.x, r.y, r.width, r.height) for r in rects] != [(0, 0, 1, 1)]:
        return None
    return elapsed


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Throughput:
    bytes: int = 0
    seconds: float = 0.0
    frames: int = 0
    messages: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds


@dataclass
class Side:
    name: str
    vnc: CountingClient
    pids: dict[str, int | None]
    run: Throughput = field(default_factory=Throughput)
    rtts: list[float] = field(default_factory=list)
    dropped: int = 0

    def throughput(self, frames: int, keep_pixels: bool) -> None:
        self.vnc.keep_pixels = keep_pixels
        run = self.run
        # Other processes first, this one last: the /proc scans stay out of its figure.
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items() if pid is not None}
        before["client"] = cpu_seconds(None)
        messages = self.vnc.messages
        started = time.perf_counter()
        for _ in range(frames):
            run.bytes += full_frame(self.vnc)
        run.seconds += time.perf_counter() - started
        run.frames += frames
        run.messages += self.vnc.messages - messages
        after = {"client": cpu_seconds(None)}
        after |= {name: cpu_seconds(pid) for name, pid in self.pids.items() if pid is not None}
        for name, value in after.items():
            run.cpu[name] = run.cpu.get(name, 0.0) + value - before[name]

    def latency(self, count: int) -> None:
        self.vnc.keep_pixels = True
        for _ in range(count):
            rtt = round_trip(self.vnc)
            if rtt is None:
                self.dropped += 1
            else:
                self.rtts.append(rtt)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(direct: Side, proxied: Side, keep_pixels: bool, elapsed: float) -> None:
    names = ["Xvnc", "websockify", "portal", "client"]
    d, p = direct.run, proxied.run
    ratio = p.mib_s / d.mib_s
    mode = "framebuffer kept" if keep_pixels else "pixels dropped"
    print(
        f"\nthroughput ({d.frames} full frames of {d.bytes / d.frames / 1e6:.2f} MB a side, "
        f"Raw, client with {mode}):"
    )
    for name, run in (("direct", d), ("proxied", p)):
        print(
            f"  {name:8s} {run.mib_s:7.1f} MiB/s  ({run.bytes / MIB:.0f} MiB in "
            f"{run.seconds:.2f} s, {run.seconds / run.frames * 1000:.1f} ms a frame, "
            f"{run.messages / run.frames:.0f} WebSocket messages a frame)"
        )
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"  ratio proxied/direct {ratio:.2f}  (target >= {TARGET_RATIO:.2f}: {verdict})")
    print("  CPU ms a frame  " + "".join(f"{n:>11s}" for n in names) + "        sum")
    for name, run in (("direct", d), ("proxied", p)):
        cells = "".join(
            f"{run.cpu[n] / run.frames * 1000:11.1f}" if n in run.cpu else f"{'-':>11s}"
            for n in names
        )
        total = sum(run.cpu.values()) / run.frames * 1000
        print(f"  {name:15s}{cells}{total:11.1f}")
    d50, d95 = percentile(direct.rtts, 0.5) * 1000, percentile(direct.rtts, 0.95) * 1000
    p50, p95 = percentile(proxied.rtts, 0.5) * 1000, percentile(proxied.rtts, 0.95) * 1000
    print(f"\nlatency (1x1 non-incremental update request, {len(direct.rtts)} round trips a side):")
    for side, a, b in ((direct, d50, d95), (proxied, p50, p95)):
        mean = statistics.fmean(side.rtts) * 1000
        print(
            f"  {side.name:8s} p50 {a:6.3f} ms  p95 {b:6.3f} ms  mean {mean:6.3f} ms"
            f"  ({side.dropped} samples dropped)"
        )
    verdict = "met" if p50 - d50 <= TARGET_ADDED_P50_MS else "MISSED"
    print(
        f"  added by the proxy: p50 {p50 - d50:+.3f} ms, p95 {p95 - d95:+.3f} ms  "
        f"(target p50 <= {TARGET_ADDED_P50_MS:.0f} ms: {verdict})"
    )
    print(f"\nwhole run {elapsed:.0f} s; load average now {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--frames", type=int, default=25, help="full frames per side a round")
    parser.add_argument("--pings", type=int, default=600, help="round trips per side in all")
    parser.add_argument("--resolution", default="1920x1080")
    parser.add_argument(
        "--keep-pixels",
        action="store_true",
        help="copy every pixel into the client's framebuffer (the test client as it is)",
    )
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 50 and 1 <= args.frames <= 200 and 10 <= args.pings <= 10000):
        raise SystemExit("bounded: --rounds 1..50, --frames 1..200, --pings 10..10000")
    started = time.monotonic()
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    conf = cluster.slurm_conf
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; cpus: {os.cpu_count()}; load "
        f"{os.getloadavg()[0]:.1f}; "
        f"{args.resolution}; {args.rounds} rounds x {args.frames} frames and "
        f"{args.pings // args.rounds} round trips per side",
        flush=True,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="hpcportal-bench-vnc-"))
    portal = start_portal(conf, port, tmp, interval=1, log_file=tmp / "portal.log")
    try:
        headers = login(base)
        with desktop_session(base, headers, conf, args.resolution) as session:
            sid = session["id"]
            info = json.loads(Path(f"{session_root(sid)}/connection.json").read_text())
            ws_port, vnc_socket = int(info["port"]), str(info["vnc_socket"])
            pids = {
                "Xvnc": process_with(b"Xvnc", b"-rfbunixpath", vnc_socket.encode()),
                "websockify": process_with(b"websockify", f"0.0.0.0:{ws_port}".encode()),
                "portal": portal.pid,
            }
            print(f"session {sid} ready ({time.monotonic() - started:.0f} s); websockify "
                  f"port {ws_port}, pids {pids}", flush=True)  # fmt: skip
            # Direct first, with the password the portal holds now: the proxied
            # connection rotates it, but an open connection stays authenticated.
            direct_vnc = open_direct(ws_port, *current_password(tmp, sid))
            proxied_vnc = open_proxied(base, sid, headers)
            with direct_vnc, proxied_vnc:
                without_portal = {k: v for k, v in pids.items() if k != "portal"}
                direct = Side("direct", direct_vnc, without_portal)
                proxied = Side("proxied", proxied_vnc, pids)
                for side in (direct, proxied):  # warm-up (socket buffers grow), not counted
                    for _ in range(5):
                        full_frame(side.vnc)
                    for _ in range(20):
                        round_trip(side.vnc)
                per_round = -(-args.pings // args.rounds)
                for i in range(args.rounds):
                    order = (direct, proxied) if i % 2 == 0 else (proxied, direct)
                    for side in order:
                        side.throughput(args.frames, args.keep_pixels)
                    for side in order:
                        side.latency(per_round)
                    print(
                        f"round {i + 1}: direct {direct.run.mib_s:.0f} MiB/s, "
                        f"proxied {proxied.run.mib_s:.0f} MiB/s so far",
                        flush=True,
                    )
            report(direct, proxied, args.keep_pixels, time.monotonic() - started)
    finally:
        portal.terminate()
        try:
            portal.wait(timeout=30)
        except subprocess.TimeoutExpired:
            portal.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def session_root(session_id: str) -> str:
    return f"/home/alice/hpcportal/sessions/{session_id}"


if __name__ == "__main__":
    main()
