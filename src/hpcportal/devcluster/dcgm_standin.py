"""A STAND-IN for NVIDIA's DCGM exporter, for the dev cluster's fake GPUs.

No GPU exists on the machines the dev cluster runs on: ``gpu001``'s GPUs are empty
device files (``gres.conf``). So this small program serves, on loopback, what
``dcgm-exporter`` would serve for them, with its metric names, help texts and labels,
so that the portal cannot tell it from the real exporter:

- ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_FB_USED`` and ``DCGM_FI_DEV_FB_FREE``
  (MiB), ``DCGM_FI_DEV_GPU_TEMP`` (°C), ``DCGM_FI_DEV_POWER_USAGE`` (W), one series
  per GPU labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName`` and
  ``Hostname``;
- ``hpc_job="<job id>"`` on a GPU's series while a job holds it, read at each scrape
  from DCGM exporter's HPC job mapping directory (``--hpc-job-mapping-dir``): one file
  per GPU index holding the job id, written by the dev cluster's Slurm Prolog and
  removed by its Epilog.

The figures are steered by the jobs, simply: a GPU is as busy as the percentage in the
file ``<load dir>/<job id>`` (``echo 90 > $LOAD_DIR/$SLURM_JOB_ID`` in the job;
``hpcportal dev-cluster status --json`` names the directory as ``gpu_load_dir``). A
held GPU without that file, and a free GPU, are idle (0 %). Memory, temperature and
power follow the utilisation, so a test can predict every figure.

Run by ``hpcportal dev-cluster up`` (``monitoring.py``) as
``python -m hpcportal.devcluster.dcgm_standin --port P --hostname gpu001 --gpus 2
--job-dir D --load-dir L``. Standard library and prometheus_client only; it listens
on 127.0.0.1 and reaches nothing else.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MODEL_NAME = "NVIDIA A100-PCIE-40GB"
FB_TOTAL_MIB = 40960
#: What a held GPU uses before its load (a CUDA context), and per percent of load.
FB_CONTEXT_MIB = 512
FB_PER_PERCENT_MIB = 300
IDLE_TEMP_C = 34.0
IDLE_POWER_W = 38.0
MAX_POWER_W = 250.0

#: (name, help) as dcgm-exporter's default counters file describes them.
METRICS: tuple[tuple[str, str], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
)
LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname")


@dataclass(frozen=True)
class Gpu:
    """One fake GPU: its index and the identity a real one would report."""

    hostname: str
    index: int

    @property
    def uuid(self) -> str:
        """Stable per host and index, shaped like NVIDIA's ``GPU-<uuid>``."""
        return f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{self.hostname}.gpu{self.index}')}"

    def labels(self) -> list[str]:
        bus = f"00000000:{0x3B + self.index:02X}:00.0"
        return [str(self.index), self.uuid, bus, f"nvidia{self.index}", MODEL_NAME, self.hostname]


def figures(load: float, held: bool) -> dict[str, float]:
    """Every metric's value for a GPU at ``load`` percent (0-100), held by a job or not."""
    load = min(max(load, 0.0), 100.0) if held else 0.0
    used = FB_CONTEXT_MIB + FB_PER_PERCENT_MIB * load if held else 0.0
    return {
        "DCGM_FI_DEV_GPU_UTIL": round(load),
        "DCGM_FI_DEV_FB_USED": round(used),
        "DCGM_FI_DEV_FB_FREE": FB_TOTAL_MIB - round(used),
        "DCGM_FI_DEV_GPU_TEMP": round(IDLE_TEMP_C + 0.45 * load),
        "DCGM_FI_DEV_POWER_USAGE": round(
            IDLE_POWER_W + (MAX_POWER_W - IDLE_POWER_W) * load / 100, 3
        ),
    }


def jobs_of(job_dir: Path, index: int) -> list[str]:
    """The job ids in the mapping file of GPU ``index`` (none without one), as
    dcgm-exporter reads them: one per line, blank lines ignored."""
    try:
        text = (job_dir / str(index)).read_text()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return [line.strip() for line in text.splitlines() if line.strip().isdigit()]


def load_of(load_dir: Path, job: str) -> float:
    """The percentage a job wrote into ``<load_dir>/<job>``; 0 without a readable one."""
    try:
        return float((load_dir / job).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


class StandinCollector:
    """A prometheus_client collector reading the mapping and load files at each scrape."""

    def __init__(self, hostname: str, gpus: int, job_dir: Path, load_dir: Path) -> None:
        self.gpus = [Gpu(hostname, index) for index in range(gpus)]
        self.job_dir = job_dir
        self.load_dir = load_dir

    def collect(self) -> Iterator[Metric]:
        rows: list[tuple[list[str], str | None, dict[str, float]]] = []
        for gpu in self.gpus:
            jobs = jobs_of(self.job_dir, gpu.index)
            if not jobs:
                rows.append((gpu.labels(), None, figures(0.0, held=False)))
            for held in jobs:  # a shared GPU: one series per job, as dcgm-exporter does
                rows.append((gpu.labels(), held, figures(load_of(self.load_dir, held), held=True)))
        for name, help_text in METRICS:
            family = Metric(name, help_text, "gauge")
            for labels, job, values in rows:
                job_label = {} if job is None else {"hpc_job": job}
                family.add_sample(
                    name, {**dict(zip(LABELS, labels, strict=True)), **job_label}, values[name]
                )
            yield family


def registry_for(collector: StandinCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(port: int, registry: CollectorRegistry) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:``port`` answering ``/metrics`` (and 404 else)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a scrape every few seconds would fill the log

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in for NVIDIA's DCGM exporter.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hostname", required=True, help="the node's name (Hostname label)")
    parser.add_argument("--gpus", type=int, required=True, help="how many GPUs the node has")
    parser.add_argument("--job-dir", type=Path, required=True, help="HPC job mapping directory")
    parser.add_argument("--load-dir", type=Path, required=True, help="per-job load files")
    args = parser.parse_args(argv)
    collector = StandinCollector(args.hostname, args.gpus, args.job_dir, args.load_dir)
    server = serve(args.port, registry_for(collector))

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
