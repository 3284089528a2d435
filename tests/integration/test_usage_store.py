"""The usage store against the live dev cluster: jobs of several users, accounts and
partitions (one failed, one cancelled, one on the GPU node) end; the ingester reads
them through ``SlurmAdapter.ended_jobs`` into a fresh database; the job-usage figures
for the window equal what the test computes from ``sacct`` itself (CPU hours per user
and per account, GPU hours, job counts by state); ingesting again, or from scratch
over the same window, changes nothing.

The test's own figures come from ``sacct -P`` text (``CPUTimeRAW``, ``AllocTRES``,
``State``, ``End``), not the JSON the portal decodes, so the two sides share no
parsing. ``sreport`` is not used: slurmdbd rolls its usage up once an hour, so the
minutes just ended are not in it yet. The cluster is shared with other tests, so the
comparison is over everything that ended in the window, ours and theirs alike; ours
are then checked to be in it. Slurm-facing: the sacct JSON differs per release.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import delete

from hpcportal.config import Settings
from hpcportal.db.migrate import upgrade
from hpcportal.db.report_tables import UsageIngestCursor
from hpcportal.db.session import Database
from hpcportal.services.reports.document import Period
from hpcportal.services.reports.ingest import UsageIngester
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.spec import ReportSpec, Viewer
from hpcportal.services.reports.usage import UsageQuery, query_for
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import SlurmExecutor
from tests.integration import slurm_cli

pytestmark = pytest.mark.slurm_facing

ADMIN = Viewer("carol", is_admin=True)
_SACCT_TIME = "%Y-%m-%dT%H:%M:%S"
STATE_COLUMN = {"COMPLETED": "completed", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
                "NODE_FAIL": "failed", "BOOT_FAIL": "failed", "TIMEOUT": "timed_out",
                "DEADLINE": "timed_out", "CANCELLED": "cancelled"}  # fmt: skip
FINAL = {*STATE_COLUMN, "PREEMPTED", "REVOKED"}


class Leader:
    """One portal: it always leads (leadership is tested in the unit tests)."""

    def is_leader(self) -> bool:
        return True

    def fence(self, session: Any) -> None:
        return None


@dataclass
class Ended:
    """The mix, ended: the window the test ingests and the job ids by role."""

    start: datetime
    end: datetime
    ids: dict[str, int]


def in_accounting(conf: str, ids: list[int], since: datetime) -> bool:
    argv = ["sacct", "-X", "-a", "-P", "-n", "-S", since.strftime(_SACCT_TIME), "-E", "now",
            "-j", ",".join(map(str, ids)), "-o", "JobIDRaw,State"]  # fmt: skip
    states = dict(line.split("|") for line in slurm_cli.run(conf, argv).splitlines() if line)
    return all(states.get(str(i), "").split(" ")[0] in FINAL for i in ids)


@pytest.fixture(scope="module")
def ended(conf: str) -> Iterator[Ended]:
    """Submit the mix, cancel one, wait until all of it has ended in accounting."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    sb = slurm_cli.sbatch
    ids: dict[str, int] = {}
    try:
        ids["alice"] = sb(conf, "alice", "-J", "us-alice", "-n", "2", "--wrap", "sleep 2")
        ids["failed"] = sb(conf, "alice", "-J", "us-failed", "--wrap", "sleep 1; exit 3")
        ids["bob"] = sb(conf, "bob", "-J", "us-bob", "-n", "3", "--wrap", "sleep 1")
        ids["gpu"] = sb(conf, "bob", "-J", "us-gpu", "-p", "gpu", "--gres=gpu:1", "--mem=500",
                        "--wrap", "sleep 2")  # fmt: skip
        ids["cancelled"] = sb(conf, "bob", "-J", "us-cancelled", "--wrap", "sleep 300")
        ids["dave"] = sb(conf, "dave", "-J", "us-dave", "-p", "viz", "-n", "4", "--wrap", "sleep 3")
        slurm_cli.wait_running(conf, ids["cancelled"], timeout=90)
        time.sleep(1)
        slurm_cli.scancel(conf, ids["cancelled"])
        deadline = time.monotonic() + 120  # slurmdbd records endings asynchronously
        while not in_accounting(conf, list(ids.values()), start):
            assert time.monotonic() < deadline, "the mix never ended in accounting"
            time.sleep(1)
        time.sleep(2)  # the window ends in the past: nothing more can end in it
        yield Ended(start, datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1), ids)
    finally:
        slurm_cli.scancel(conf, *ids.values(), missing_ok=True)


@pytest.fixture(scope="module")
def adapter(devcluster: dict[str, Any]) -> SlurmAdapter:
    bin_dir = Path(devcluster["bin_dir"]) if devcluster.get("bin_dir") else None
    executor = SlurmExecutor(slurm_conf=Path(devcluster["slurm_conf"]), bin_dir=bin_dir, timeout=60)
    return SlurmAdapter(executor, cache_seconds=0)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Database]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'portal.db'}"
    settings = Settings(database_url=url, jwt_secret=SecretStr("x" * 40))
    upgrade(settings)
    db = Database(settings)
    yield settings, db
    db.dispose()


def ingester_for(
    settings: Settings, db: Database, adapter: SlurmAdapter, window: Ended
) -> UsageIngester:
    """An ingester whose first round covers exactly the window, in one-minute steps."""
    span = window.end - window.start
    tuned = settings.model_copy(
        update={
            "reports_ingest_window_minutes": 1,
            "reports_ingest_settle_seconds": 0,
            "reports_ingest_lookback_days": span.total_seconds() / 86400,
        }
    )
    return UsageIngester(tuned, db, adapter, Leader(), clock=lambda: window.end)


def from_sacct(conf: str, window: Ended) -> dict[str, Any]:
    """The test's own figures: jobs that ended in the window, summed from sacct -P."""
    argv = ["sacct", "-X", "-a", "-P", "-n", "-S", window.start.strftime(_SACCT_TIME),
            "-E", window.end.strftime(_SACCT_TIME),
            "-o", "JobIDRaw,User,Account,State,CPUTimeRAW,End,AllocTRES"]  # fmt: skip
    cpu_user: dict[str, int] = defaultdict(int)
    cpu_account: dict[str, int] = defaultdict(int)
    gpu_seconds = 0
    states: Counter[str] = Counter()
    ids: set[int] = set()
    for line in slurm_cli.run(conf, argv).splitlines():
        job_id, user, account, state, cpu_raw, end, tres = line.split("|")
        state = state.split(" ")[0]
        if state not in FINAL or end in ("", "Unknown"):
            continue
        ended_at = datetime.strptime(end, _SACCT_TIME).replace(tzinfo=UTC)
        if not window.start <= ended_at < window.end:
            continue
        ids.add(int(job_id))
        cpu_user[user] += int(cpu_raw)
        cpu_account[account] += int(cpu_raw)
        states[STATE_COLUMN.get(state, "other")] += 1
        gpus = dict(x.split("=", 1) for x in tres.split(",") if "=" in x).get("gres/gpu", "0")
        gpu_seconds += int(gpus) * int(cpu_raw) // max(1, _cpus(tres))
    return {"cpu_user": dict(cpu_user), "cpu_account": dict(cpu_account), "gpu": gpu_seconds,
            "states": dict(states), "ids": ids}  # fmt: skip


def _cpus(tres: str) -> int:
    return int(dict(x.split("=", 1) for x in tres.split(",") if "=" in x).get("cpu", "1"))


def from_store(db: Database, window: Ended) -> dict[str, Any]:
    """The same figures from the usage store's rollups, as reports ask for them."""
    period = Period(start=window.start, end=window.end)
    with db.session() as session:

        def ask(dimension: str) -> dict[str, float]:
            q = UsageQuery(period=period, dimensions=[dimension], measures=["cpu_hours"])
            rows = query_for(session, q, ADMIN).rows
            return {
                r.keys[dimension]: round(float(r.values["cpu_hours"] or 0) * 3600) for r in rows
            }

        totals = query_for(session, UsageQuery(period=period), ADMIN).totals
    states = {
        k: int(totals[k] or 0) for k in ("completed", "failed", "timed_out", "cancelled", "other")
    }
    return {"cpu_user": ask("user"), "cpu_account": ask("account"),
            "gpu": round(float(totals["gpu_hours"] or 0) * 3600),
            "states": {k: v for k, v in states.items() if v}}  # fmt: skip


def test_ingested_figures_equal_sacct_and_count_once(
    conf: str, ended: Ended, adapter: SlurmAdapter, database: tuple[Settings, Database]
) -> None:
    settings, db = database
    ingester = ingester_for(settings, db, adapter, ended)
    windows = ingester.run()
    assert windows and windows[-1].end == ended.end
    expected = from_sacct(conf, ended)
    assert set(ended.ids.values()) <= expected["ids"]
    got = from_store(db, ended)
    assert got["cpu_user"] == expected["cpu_user"]
    assert got["cpu_account"] == expected["cpu_account"]
    assert got["gpu"] == expected["gpu"] and got["gpu"] >= 2  # the GPU job: 1 GPU, >= 2 s
    assert got["states"] == expected["states"]
    assert expected["states"]["failed"] >= 1 and expected["states"]["cancelled"] >= 1
    assert {"alice", "bob", "dave"} <= set(got["cpu_user"])
    assert {"research", "physics"} <= set(got["cpu_account"])

    # Again: up to date, nothing read. The window re-read, and from scratch: nothing added.
    assert ingester.run() == []
    again = ingester.ingest_window(ended.start, ended.end, overlap=timedelta(0))
    assert again.added == 0 and again.read == len(expected["ids"])
    with db.session() as session:
        session.execute(delete(UsageIngestCursor))
    assert sum(w.added for w in ingester_for(settings, db, adapter, ended).run()) == 0
    assert from_store(db, ended) == got


def test_job_usage_report_of_the_window(
    ended: Ended, database: tuple[Settings, Database], adapter: SlurmAdapter
) -> None:
    _, db = database
    spec = ReportSpec(
        kind="job_usage", period=Period(start=ended.start, end=ended.end), language="ko"
    )
    with db.session() as session:
        doc = build_report(spec, Viewer("dave", coordinates=frozenset({"physics"})), session)
    by_user = next(s for s in doc.sections if s.title == "사용자별").tables[0]
    assert {r[0] for r in by_user.rows} == {"dave"}  # physics is dave's alone on the dev cluster
    assert doc.sources[0].slurm_release == str(adapter.cluster().release)


def test_the_job_usage_report_shows_the_sacct_figures(
    conf: str, ended: Ended, adapter: SlurmAdapter, database: tuple[Settings, Database]
) -> None:
    """The report an admin gets for the window (``build_report``, not the store's
    query) carries sacct's CPU hours per user and per account and its jobs by state."""
    settings, db = database
    ingester_for(settings, db, adapter, ended).run()  # a no-op when the first test ran
    expected = from_sacct(conf, ended)
    spec = ReportSpec(
        kind="job_usage",
        period=Period(start=ended.start, end=ended.end),
        language="en",
        compare_previous=False,
    )
    with db.session() as session:
        doc = build_report(spec, ADMIN, session)
    tables = {s.title: s.tables[0] for s in doc.sections if s.tables}

    def cpu_seconds(title: str) -> dict[str, int]:
        table = tables[title]
        at = [c.key for c in table.columns].index("cpu_hours")
        cells = {str(r[0]): r[at] or 0 for r in table.rows}
        assert all(isinstance(v, int | float) for v in cells.values())
        return {k: round(float(v) * 3600) for k, v in cells.items() if isinstance(v, int | float)}

    assert cpu_seconds("By user") == expected["cpu_user"]
    assert cpu_seconds("By account") == expected["cpu_account"]
    labels = {"Completed": "completed", "Failed": "failed", "Timed out": "timed_out",
              "Cancelled": "cancelled", "Other": "other"}  # fmt: skip
    by_state = {labels[str(r[0])]: r[1] or 0 for r in tables["Jobs by state"].rows}
    assert {k: v for k, v in by_state.items() if v} == expected["states"]


def test_a_crash_mid_window_then_a_rerun_counts_each_job_once(
    conf: str,
    ended: Ended,
    adapter: SlurmAdapter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Into a fresh store: the replica dies between a window's hourly and daily rollups
    (the jobs already inserted); the next run's figures still equal sacct's."""
    from hpcportal.services.reports import ingest

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'crash.db'}",
                        jwt_secret=SecretStr("x" * 40))  # fmt: skip
    upgrade(settings)
    db = Database(settings)
    try:
        real_upsert = ingest.rollup_upsert
        calls = 0

        def crash_after_the_hourly_rollup(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("the replica died here")
            return real_upsert(*args, **kwargs)

        monkeypatch.setattr(ingest, "rollup_upsert", crash_after_the_hourly_rollup)
        with pytest.raises(RuntimeError, match="died"):
            ingester_for(settings, db, adapter, ended).run()
        monkeypatch.setattr(ingest, "rollup_upsert", real_upsert)
        ingester_for(settings, db, adapter, ended).run()
        expected = from_sacct(conf, ended)
        got = from_store(db, ended)
        assert got["cpu_user"] == expected["cpu_user"]
        assert got["cpu_account"] == expected["cpu_account"]
        assert got["states"] == expected["states"]
    finally:
        db.dispose()
