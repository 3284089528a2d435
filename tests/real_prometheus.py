"""A REAL Prometheus for tests and benchmarks: Debian's ``prometheus`` and
``prometheus-node-exporter`` started on 127.0.0.1 (free ports, a temp folder), until
the dev cluster starts its own (``dev-cluster status --json`` then names a
``prometheus_url``).

One node exporter serves this host's figures; Prometheus scrapes it once per Slurm
node name given, with ``instance`` set to that node (``node001:9100``), so the
portal sees one node exporter per node, as a site has. ``gpu_exporter`` (optional)
is a small HTTP server whose text uses NVIDIA DCGM exporter's metric names and
labels (``DCGM_FI_DEV_*``, ``gpu``, ``UUID``, ``Hostname``, ``hpc_job``): the one
stand-in here, since no GPU exists on these machines; the figures it serves are set
by the test (``GpuStandIn.jobs``), and Prometheus scrapes it as it would the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

PROMETHEUS = "/usr/bin/prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def available() -> bool:
    return os.access(PROMETHEUS, os.X_OK) and os.access(NODE_EXPORTER, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class GpuStandIn:
    """DCGM exporter's text for ``gpus`` GPUs of ``hostname``; ``jobs[gpu] = job id``
    labels that GPU with ``hpc_job`` (DCGM's HPC job mapping), and ``util[gpu]`` is its
    utilisation in percent."""

    hostname: str = "gpu001"
    gpus: int = 2
    jobs: dict[int, str] = field(default_factory=dict)
    util: dict[int, float] = field(default_factory=dict)
    port: int = 0

    def text(self) -> str:
        lines = []
        for name, kind, help_, value in (
            ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", None),
            ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", 2048.0),
            ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", 14336.0),
            ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", 41.0),
            ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", 61.5),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            for gpu in range(self.gpus):
                labels = (f'gpu="{gpu}",UUID="GPU-standin-{self.hostname}-{gpu}",'
                          f'device="nvidia{gpu}",modelName="stand-in",'
                          f'Hostname="{self.hostname}"')  # fmt: skip
                if gpu in self.jobs:
                    labels += f',hpc_job="{self.jobs[gpu]}"'
                figure = self.util.get(gpu, 0.0) if value is None else value
                lines.append(f"{name}{{{labels}}} {figure}")
        return "\n".join(lines) + "\n"


@contextmanager
def _gpu_server(gpu: GpuStandIn) -> Iterator[GpuStandIn]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = gpu.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gpu.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="dcgm-standin", daemon=True)
    thread.start()
    try:
        yield gpu
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RealPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    exporter: subprocess.Popen[bytes]
    folder: Path
    gpu: GpuStandIn | None = None

    def stop(self) -> None:
        """Stop Prometheus (the exporters stay): the portal must answer 503."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def scrape_portal(self, url: str) -> None:
        """Scrape a portal's ``/metrics`` (``http://127.0.0.1:PORT``) from now on, as
        job ``portal`` (file-based discovery: Prometheus sees the file change)."""
        address = url.split("://", 1)[-1].rstrip("/")
        targets = self.folder / "portal_targets.json"
        written = targets.with_suffix(".tmp")
        written.write_text(json.dumps([{"targets": [address]}]))
        written.replace(targets)

    def query(self, promql: str, **params: str) -> dict[str, object]:
        """Prometheus' own answer, straight from its API."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql, **params}, timeout=10)
        answer: dict[str, object] = r.json()
        return answer

    def wait_for(self, promql: str, timeout: float = 60.0) -> None:
        """Until ``promql`` has a non-empty answer (the first scrapes have landed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.query(promql).get("data")
                if isinstance(data, dict) and data.get("result"):
                    return
            except (httpx.HTTPError, ValueError):  # not up yet, or "Service Unavailable"
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus has no {promql} after {timeout} s")


def _config(
    nodes: list[str],
    exporter_port: int,
    gpu: GpuStandIn | None,
    rules: Path | None,
    folder: Path,
) -> str:
    lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s"]
    if rules is not None:
        lines += ["rule_files:", f"  - {rules}"]
    lines += ["scrape_configs:", "  - job_name: node", "    static_configs:"]
    for node in nodes:
        lines += [f"      - targets: ['127.0.0.1:{exporter_port}']",
                  f"        labels: {{instance: '{node}:9100'}}"]  # fmt: skip
    lines += ["  - job_name: portal", "    file_sd_configs:",
              f"      - files: ['{folder / 'portal_targets.json'}']",
              "        refresh_interval: 1s"]  # fmt: skip
    if gpu is not None:
        lines += ["  - job_name: dcgm", "    static_configs:",
                  f"      - targets: ['127.0.0.1:{gpu.port}']",
                  f"        labels: {{instance: '{gpu.hostname}:9400'}}"]  # fmt: skip
    return "\n".join(lines) + "\n"


@contextmanager
def real_prometheus(
    nodes: list[str],
    gpu: GpuStandIn | None = None,
    *,
    rules: Path | None = None,
    keep: Path | None = None,
) -> Iterator[RealPrometheus]:
    """Prometheus scraping one node exporter as each of ``nodes`` (and ``gpu``), every
    second, ready once every node has a sample."""
    folder = keep or Path(tempfile.mkdtemp(prefix="hpcportal-prom-"))
    with _gpu_server(gpu) if gpu is not None else _nothing() as running_gpu:
        exporter_port, prom_port = free_port(), free_port()
        exporter = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{exporter_port}",
             "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
             "--collector.loadavg", "--collector.netdev", "--collector.diskstats",
             "--collector.filesystem"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (folder / "portal_targets.json").write_text("[]")
        config = _config(nodes, exporter_port, running_gpu, rules, folder)
        (folder / "prometheus.yml").write_text(config)
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("wb"),
        )  # fmt: skip
        prom = RealPrometheus(f"http://127.0.0.1:{prom_port}", process, exporter, folder,
                              running_gpu)  # fmt: skip
        try:
            prom.wait_for(f"count(node_load1) >= {len(nodes)}")
            if running_gpu is not None:
                prom.wait_for("DCGM_FI_DEV_GPU_UTIL")
            yield prom
        finally:
            for p in (process, exporter):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
            if keep is None:
                shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
