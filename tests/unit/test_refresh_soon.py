"""Reading jobs again after the portal's own actions: merged into the snapshot,
coalesced, rate-bounded, and asked again while Slurm passes through COMPLETING."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, cast

import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput
from hpcportal.services.output_stream import resume_offset
from hpcportal.services.refresh_soon import MAX_FOLLOW_UPS, RefreshSoon
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm import parse
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus
from tests.unit.conftest import TEST_SECRET
from tests.unit.slurm_fixtures import recorded

JOBS = parse.parse_squeue(recorded("squeue.json"))
NODES = parse.parse_sinfo(recorded("sinfo.json"))
PARTITIONS = parse.parse_partitions(recorded("scontrol_partitions.txt"))


def job(job_id: str) -> Job:
    return next(j for j in JOBS if j.id == job_id)


def with_status(j: Job, status: JobStatus, **more: Any) -> Job:
    return j.model_copy(update={"status": status, "state": status.value.upper(), **more})


def test_with_jobs_replaces_only_what_slurm_answered_for() -> None:
    snap = ClusterSnapshot.build(1, 0.2, list(JOBS), list(NODES), list(PARTITIONS))
    cancelled = with_status(job("6"), JobStatus.CANCELLED)
    merged = snap.with_jobs(2, {"6", "99"}, [cancelled])  # 99: Slurm does not know it
    assert merged.generation == 2
    assert merged.jobs_by_id["6"].status is JobStatus.CANCELLED
    assert [j.id for j in merged.jobs] == [j.id for j in snap.jobs]  # order kept
    assert merged.nodes == snap.nodes and merged.partitions == snap.partitions
    # No fresher as a whole than the last full refresh.
    assert (merged.taken_at, merged.monotonic) == (snap.taken_at, snap.monotonic)


def test_with_jobs_takes_an_arrays_tasks_all_at_once() -> None:
    snap = ClusterSnapshot.build(1, 0.2, list(JOBS), list(NODES), list(PARTITIONS))
    tasks = [j for j in JOBS if j.array is not None and j.array.job_id == 7]
    assert [t.id for t in tasks] == ["7_[0-5%2]"]
    started = with_status(tasks[0], JobStatus.RUNNING, id="7_0")
    pending = tasks[0].model_copy(update={"id": "7_[1-5%2]"})
    merged = snap.with_jobs(2, {"7"}, [started, pending])
    ids = {j.id for j in merged.jobs}
    assert "7_[0-5%2]" not in ids and {"7_0", "7_[1-5%2]"} <= ids
    assert len(merged.jobs) == len(snap.jobs) + 1


class Reader:
    """Records each read; answers with the jobs it is told to."""

    def __init__(self, answer: dict[str, JobStatus] | None = None) -> None:
        self.reads: list[tuple[float, set[str]]] = []
        self.answer = answer or {}

    async def __call__(self, ids: set[str]) -> list[Job]:
        self.reads.append((time.monotonic(), set(ids)))
        return [
            with_status(job("6"), self.answer.get(i, JobStatus.RUNNING), id=i, job_id=int(i))
            for i in ids
        ]


def test_requests_of_one_moment_are_read_together_and_reads_keep_their_gap() -> None:
    reader = Reader()

    async def scenario() -> None:
        soon = RefreshSoon(reader, delay=0.02, min_gap=0.3)
        soon.start()
        started = time.monotonic()
        soon.request(["11", "12"])
        soon.request(["13"])
        await asyncio.sleep(0.1)
        assert [ids for _, ids in reader.reads] == [{"11", "12", "13"}]
        assert reader.reads[0][0] - started < 0.1  # at once, not at the next refresh
        for n in range(20):  # a storm of actions: still one read per gap
            soon.request([str(20 + n)])
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.7)
        await soon.stop()

    asyncio.run(scenario())
    times = [t for t, _ in reader.reads]
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(times)), times
    assert set().union(*(ids for _, ids in reader.reads)) == {str(n) for n in range(11, 14)} | {
        str(20 + n) for n in range(20)
    }
    assert len(reader.reads) <= 4


def test_while_the_guard_backs_off_its_interval_is_the_gap() -> None:
    reader = Reader()

    async def scenario() -> None:
        soon = RefreshSoon(reader, delay=0.0, min_gap=0.05, gap=lambda: 0.5)
        soon.start()
        soon.request(["11"])
        await asyncio.sleep(0.05)
        soon.request(["12"])
        await asyncio.sleep(0.3)
        assert len(reader.reads) == 1
        await asyncio.sleep(0.4)
        assert len(reader.reads) == 2
        await soon.stop()

    asyncio.run(scenario())


def test_a_job_seen_completing_is_asked_again_a_few_times() -> None:
    reader = Reader({"11": JobStatus.COMPLETING, "12": JobStatus.CANCELLED})

    async def scenario() -> None:
        soon = RefreshSoon(reader, delay=0.0, min_gap=0.02)
        soon.start()
        soon.request(["11", "12"])
        await asyncio.sleep(0.1)
        assert {"11"} in [ids for _, ids in reader.reads[1:]]  # 12 was final: not again
        reader.answer["11"] = JobStatus.CANCELLED
        await asyncio.sleep(0.1)
        count = len(reader.reads)
        await asyncio.sleep(0.1)
        assert len(reader.reads) == count  # settled: no more reads
        reader.answer["11"] = JobStatus.COMPLETING  # stuck there: asked a bounded number
        before.append(len(reader.reads))
        soon.request(["11"])
        await asyncio.sleep(0.5)
        await soon.stop()

    before: list[int] = []
    asyncio.run(scenario())
    assert sum(1 for _, ids in reader.reads if "12" in ids) == 1
    assert [ids for _, ids in reader.reads[before[0] :]] == [{"11"}] * (1 + MAX_FOLLOW_UPS)


class FakeAdapter:
    def __init__(self) -> None:
        self.named: list[list[str]] = []
        self.status = JobStatus.RUNNING

    def jobs(self) -> list[Job]:
        return list(JOBS)

    def nodes(self) -> list[Any]:
        return list(NODES)

    def partitions(self) -> list[Any]:
        return list(PARTITIONS)

    def controller_private_data(self) -> Any:
        from hpcportal.slurm.models import PrivateData

        return PrivateData()

    def jobs_named(self, ids: list[str]) -> list[Job]:
        self.named.append(ids)
        return [with_status(job("6"), self.status)] if "6" in ids else []


def test_an_action_reaches_listeners_without_a_full_refresh() -> None:
    adapter = FakeAdapter()
    settings = Settings(
        jwt_secret=SecretStr(TEST_SECRET),
        database_url="sqlite://",
        refresh_interval=60,
        refresh_soon_delay=0.0,
    )
    service = SnapshotService(cast(SlurmAdapter, adapter), settings)
    heard: list[tuple[int | None, str]] = []

    def listener(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        heard.append((previous.generation if previous else None, current.jobs_by_id["6"].status))

    async def scenario() -> None:
        service.add_listener(listener)
        await service.start()
        await service.current()
        adapter.status = JobStatus.CANCELLED
        service.request_refresh(6)
        await asyncio.sleep(0.2)
        await service.stop()

    asyncio.run(scenario())
    assert adapter.named == [["6"]]
    assert heard == [(None, JobStatus.RUNNING), (1, JobStatus.CANCELLED)]
    assert service.health().generation == 2


@pytest.mark.parametrize(
    ("header", "offset", "expected"),
    [(None, 5, 5), ("", 5, 5), ("120", 5, 120), (" 7 ", 0, 7)],
)
def test_last_event_id_says_where_to_resume(header: str | None, offset: int, expected: int) -> None:
    assert resume_offset(header, offset) == expected


@pytest.mark.parametrize("header", ["-1", "abc", "1e3", "٣", "9" * 30, "99999999999999999999"])
def test_a_last_event_id_that_is_no_offset_is_refused(header: str) -> None:
    with pytest.raises(InvalidInput):
        resume_offset(header, 0)


def test_a_full_refresh_asked_before_an_action_cannot_undo_it() -> None:
    """The read after an action does not wait for a slow full refresh under way, and
    that refresh (whose squeue ran before the action) keeps what the read found."""
    adapter = FakeAdapter()
    release = threading.Event()
    asked = threading.Event()
    slow_jobs = adapter.jobs

    def jobs() -> list[Job]:
        asked.set()
        release.wait(5)
        return slow_jobs()  # still running: read before the cancel

    settings = Settings(
        jwt_secret=SecretStr(TEST_SECRET), database_url="sqlite://", refresh_interval=60
    )
    service = SnapshotService(cast(SlurmAdapter, adapter), settings)

    async def scenario() -> tuple[JobStatus, JobStatus]:
        await service.refresh()
        adapter.jobs = jobs  # type: ignore[method-assign]
        full = asyncio.create_task(service.refresh())
        await asyncio.get_running_loop().run_in_executor(None, asked.wait, 5)
        adapter.status = JobStatus.CANCELLED
        await asyncio.wait_for(service.refresh_jobs({"6"}), 2)  # not behind the refresh
        during = (await service.current()).jobs_by_id["6"].status
        release.set()
        await full
        after = (await service.current()).jobs_by_id["6"].status
        await service.stop()
        return during, after

    assert asyncio.run(scenario()) == (JobStatus.CANCELLED, JobStatus.CANCELLED)
    assert service.health().generation == 3
