"""Usage reports: how fast the usage store ingests, against bare ``sacct --json``.

Run as root with the dev cluster up::

    .venv/bin/python bench/reports.py [--days 30] [--submit 300] [--window-minutes 360]

Ingestion part (``bench_ingestion``):

1. With ``--submit N`` (default 300), alice submits an array of N one-second jobs
   (``true``) first and the bench waits until accounting has them all, so the window
   holds at least that many finished jobs (the dev cluster is often freshly made).
2. Times bare ``sacct --json -X --allusers -S -E`` over the window (the same argv the
   portal's ``SlurmAdapter.ended_jobs`` runs, in a subprocess; median of three).
3. Times the portal's ingester over the same window into a fresh SQLite database in a
   temporary folder (or ``--database-url``): sacct, strict decoding, the end-time
   filter, the insert of the new jobs and the hourly and daily rollups, one
   transaction per ``--window-minutes`` window; then once more over the same window
   (everything already stored: the re-read path).
4. Prints jobs, seconds, jobs per second and the ratio ingest / sacct.

Report-time part (``report_time.bench_report_time``, bench/report_time.py): a
one-year job-usage report over >= ``--report-jobs`` SYNTHETIC jobs inserted as rollup
rows, rendered to PDF, XLSX and CSV; ``main`` runs it after the ingestion part.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from portal_process import slurm_env
from report_time import bench_report_time

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydantic import SecretStr  # noqa: E402

from hpcportal.config import Settings  # noqa: E402
from hpcportal.db.migrate import upgrade  # noqa: E402
from hpcportal.db.session import Database  # noqa: E402
from hpcportal.devcluster import DevCluster  # noqa: E402
from hpcportal.services.reports.ingest import UsageIngester  # noqa: E402
from hpcportal.slurm.adapter import SlurmAdapter  # noqa: E402
from hpcportal.slurm.executor import SlurmExecutor  # noqa: E402

_SACCT_TIME = "%Y-%m-%dT%H:%M:%S"


class _Leader:
    """One portal: it leads (the bench measures ingestion, not the lease)."""

    def is_leader(self) -> bool:
        return True

    def fence(self, session: Any) -> None:
        return None


@dataclass(frozen=True)
class IngestionBench:
    """What ``bench_ingestion`` measured over one window."""

    start: datetime
    end: datetime
    jobs: int
    sacct_seconds: float
    ingest_seconds: float
    reingest_seconds: float
    windows: int

    @property
    def ratio(self) -> float:
        return self.ingest_seconds / self.sacct_seconds if self.sacct_seconds else float("inf")

    def report(self) -> str:
        def rate(seconds: float) -> str:
            return f"{self.jobs / seconds:,.0f} jobs/s" if seconds else "-"

        return (
            f"window {self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC, "
            f"{self.jobs:,} finished jobs\n"
            f"  bare sacct --json (median of 3): {self.sacct_seconds:.3f} s "
            f"({rate(self.sacct_seconds)})\n"
            f"  ingest into the usage store ({self.windows} windows): "
            f"{self.ingest_seconds:.3f} s ({rate(self.ingest_seconds)})\n"
            f"  ingest again (all stored, nothing added): {self.reingest_seconds:.3f} s\n"
            f"  ratio ingest / sacct: {self.ratio:.2f}"
        )


def submit_array(conf: Path, jobs: int) -> None:
    """alice runs ``jobs`` one-second tasks; wait until accounting has them ended."""
    out = subprocess.run(
        ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "--chdir=/tmp", "-o", "/dev/null",
         "-J", "bench-usage", "-a", f"1-{jobs}", "--wrap", "true"],
        env=slurm_env(conf), capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    array = out.strip().split(";")[0]
    deadline = time.monotonic() + 600
    while True:
        states = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", array, "-o", "State"],
            env=slurm_env(conf), capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
        if len(states) >= jobs and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in states):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench's array {array} did not end within 10 minutes")
        time.sleep(2)


def bare_sacct(conf: Path, start: datetime, end: datetime, adapter: SlurmAdapter) -> float:
    """Median seconds of the portal's sacct argv, run bare (output discarded)."""
    flag = adapter.cluster().json_flag
    argv = ["sacct", flag, "-X", "--allusers", "-S", start.strftime(_SACCT_TIME),
            "-E", end.strftime(_SACCT_TIME)]  # fmt: skip
    times = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run(argv, env=slurm_env(conf), capture_output=True, timeout=600, check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_ingestion(
    conf: Path, *, days: float, window_minutes: int, database_url: str | None = None
) -> IngestionBench:
    """Ingest the last ``days`` of finished jobs into a fresh usage store; time it
    against bare sacct over the same window."""
    executor = SlurmExecutor(slurm_conf=conf, timeout=600)
    adapter = SlurmAdapter(executor, cache_seconds=0)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    sacct_seconds = bare_sacct(conf, start, end, adapter)
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'portal.db'}"
        settings = Settings(
            database_url=url,
            jwt_secret=SecretStr("bench-" * 8),
            reports_ingest_window_minutes=window_minutes,
            reports_ingest_settle_seconds=0,
            reports_ingest_lookback_days=days,
        )
        upgrade(settings)
        database = Database(settings)
        try:
            ingester = UsageIngester(settings, database, adapter, _Leader(), clock=lambda: end)
            began = time.perf_counter()
            windows = ingester.run(max_windows=1_000_000)
            ingest_seconds = time.perf_counter() - began
            began = time.perf_counter()
            again = ingester.ingest_window(start, end, overlap=timedelta(0))
            reingest_seconds = time.perf_counter() - began
            assert again.added == 0, "the second ingest added jobs"
        finally:
            database.dispose()
    return IngestionBench(
        start=start,
        end=end,
        jobs=sum(w.added for w in windows),
        sacct_seconds=sacct_seconds,
        ingest_seconds=ingest_seconds,
        reingest_seconds=reingest_seconds,
        windows=len(windows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    parser.add_argument("--days", type=float, default=30.0, help="window: the last DAYS days")
    parser.add_argument("--submit", type=int, default=300, help="one-second jobs to run first")
    parser.add_argument("--window-minutes", type=int, default=360)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--report-jobs",
        type=int,
        default=200_000,
        help="synthetic jobs of the report-time part (0: skip it)",
    )
    args = parser.parse_args()
    if not 0 < args.days <= 3660 or not 0 <= args.submit <= 5000:
        raise SystemExit("bounded: --days 0..3660, --submit 0..5000")
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    conf = cluster.slurm_conf
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; cluster: {args.dir.name}", flush=True)
    if args.submit:
        submit_array(conf, args.submit)
    result = bench_ingestion(conf, days=args.days, window_minutes=args.window_minutes,
                             database_url=args.database_url)  # fmt: skip
    print(result.report(), flush=True)
    if args.report_jobs:
        timed = bench_report_time(jobs=args.report_jobs, database_url=args.database_url)
        print(timed.report(), flush=True)


if __name__ == "__main__":
    main()
