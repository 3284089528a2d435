"""The snapshot refresher backs off while slurmctld is slow or rate-limits, and comes
back to its configured interval when Slurm recovers.

A real ``SnapshotService`` (and its real ``LoadGuard``) is driven by ``PacedAdapter``,
a test stand-in for the Slurm adapter whose answers take as long as the test says, or
raise the error the executor makes of slurmctld's rate-limit answer.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.errors import SlurmRateLimited, SlurmUnreachable
from hpcportal.services.load_guard import LoadGuard
from hpcportal.services.snapshot import SnapshotService
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.executor import classify_failure


class PacedAdapter:
    """Answers (empty) after ``delay`` seconds, or raises ``error``; counts the refreshes
    (its ``jobs`` reads)."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.error: Exception | None = None
        self.reads = 0

    def _answer(self) -> list[Any]:
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return []

    def jobs(self) -> list[Any]:
        self.reads += 1
        return self._answer()

    def controller_private_data(self) -> Any:
        """``PrivateData`` hiding nothing, for a refresher that reads it too."""
        self._answer()
        return SimpleNamespace(flags=frozenset())

    def nodes(self) -> list[Any]:
        return self._answer()

    def partitions(self) -> list[Any]:
        return self._answer()


def service(adapter: PacedAdapter, **overrides: Any) -> SnapshotService:
    values: dict[str, Any] = {
        "database_url": "sqlite://",
        "refresh_interval": 0.2,
        "refresh_slow_fraction": 0.5,
        "refresh_max_interval": 1.6,
        "stale_after": 0.5,
        **overrides,
    }
    settings = Settings(jwt_secret=SecretStr("x" * 48), **values)
    return SnapshotService(cast(SlurmAdapter, adapter), settings)


def backoffs(reason: str) -> float:
    value = REGISTRY.get_sample_value("hpcportal_snapshot_backoffs_total", {"reason": reason})
    return value or 0.0


def interval_gauge() -> float | None:
    return REGISTRY.get_sample_value("hpcportal_snapshot_refresh_interval_seconds")


def test_slow_refreshes_double_the_interval_up_to_the_maximum_then_it_comes_back() -> None:
    adapter = PacedAdapter()
    snapshot = service(adapter)
    before = backoffs("slow")

    async def scenario() -> None:
        adapter.delay = 0.15  # more than half of the 0.2 s interval
        await snapshot.refresh()
        assert snapshot.interval == pytest.approx(0.4)
        assert interval_gauge() == pytest.approx(0.4)
        health = snapshot.health()
        assert health.interval == pytest.approx(0.4)
        assert health.backoff is not None and "answered slowly" in health.backoff
        assert "every 0.4 s" in health.backoff
        # A fresh snapshot is not stale for being older than usual while backing off.
        assert not health.stale
        # 0.15 s is no longer slow at 0.4 s, but it would be at 0.2 s: hold, no flapping.
        await snapshot.refresh()
        assert snapshot.interval == pytest.approx(0.4)
        adapter.delay = 0.5
        for expected in (0.8, 1.6, 1.6):  # capped at refresh_max_interval
            await snapshot.refresh()
            assert snapshot.interval == pytest.approx(expected)
        assert backoffs("slow") == before + 3  # only lengthenings are counted
        adapter.delay = 0.0
        for expected in (0.8, 0.4, 0.2, 0.2):
            await snapshot.refresh()
            assert snapshot.interval == pytest.approx(expected)
        health = snapshot.health()
        assert health.backoff is None and health.interval == pytest.approx(0.2)
        assert interval_gauge() == pytest.approx(0.2)
        await snapshot.stop()

    asyncio.run(scenario())


def test_rate_limit_answers_back_off_even_when_fast() -> None:
    adapter = PacedAdapter()
    snapshot = service(adapter)
    before = backoffs("rate_limited")

    async def scenario() -> None:
        await snapshot.refresh()  # a first snapshot
        adapter.error = classify_failure(
            "squeue", "squeue: error: Rate limit exceeded, please retry momentarily"
        )
        assert isinstance(adapter.error, SlurmRateLimited)
        await snapshot.refresh()
        await snapshot.refresh()
        assert snapshot.interval == pytest.approx(0.8)
        assert backoffs("rate_limited") == before + 2
        health = snapshot.health()
        assert health.backoff is not None and "rate-limiting" in health.backoff
        assert health.last_error is not None and "Rate limit exceeded" in health.last_error
        assert health.stale  # this refresh failed: the data did not move
        adapter.error = None
        await snapshot.refresh()
        await snapshot.refresh()
        assert snapshot.interval == pytest.approx(0.2)
        assert snapshot.health().backoff is None and not snapshot.health().stale
        await snapshot.stop()

    asyncio.run(scenario())


def test_fast_failures_keep_the_interval_short() -> None:
    """slurmctld down (connection refused) costs it nothing: the portal keeps looking."""
    adapter = PacedAdapter()
    adapter.error = SlurmUnreachable("Slurm is not reachable: Connection refused")
    snapshot = service(adapter)

    async def scenario() -> None:
        for _ in range(3):
            await snapshot.refresh()
        assert snapshot.interval == pytest.approx(0.2)
        assert snapshot.health().backoff is None
        await snapshot.stop()

    asyncio.run(scenario())


def test_the_running_refresher_asks_slurm_less_while_it_is_slow() -> None:
    """The background task itself: reads per second drop while slow, then recover."""
    adapter = PacedAdapter()
    snapshot = service(adapter, refresh_interval=0.1, refresh_max_interval=1.6)

    async def reads_in(seconds: float) -> int:
        start = adapter.reads
        await asyncio.sleep(seconds)
        return adapter.reads - start

    async def scenario() -> None:
        await snapshot.start()
        normal = await reads_in(1.0)
        adapter.delay = 0.12  # slow at 0.1 s and 0.2 s; at 0.4 s fine, but not at 0.2 s
        await asyncio.sleep(1.5)
        assert snapshot.interval == pytest.approx(0.4)
        slow = await reads_in(2.0)
        adapter.delay = 0.0
        await asyncio.sleep(2.5)
        assert snapshot.interval == pytest.approx(0.1)
        recovered = await reads_in(1.0)
        await snapshot.stop()
        # ~10 refreshes a second, then one per 0.52 s (the refresh, then a whole quiet
        # interval), then ~10 again.
        assert normal >= 6
        assert slow <= 5
        assert recovered >= 6

    asyncio.run(scenario())


def test_guard_arithmetic_without_a_service() -> None:
    guard = LoadGuard(base=10, maximum=25, slow_fraction=0.5)
    guard.observe(6, ok=True)
    assert guard.interval == 20 and guard.backoff and guard.backoff.reason == "slow"
    guard.observe(11, ok=True)  # slow at 20 s too: capped at the maximum
    assert guard.interval == 25
    guard.observe(6.5, ok=True)  # would be slow at 12.5 s: hold
    assert guard.interval == 25
    guard.observe(2, ok=False)  # a fast failure says nothing about load
    assert guard.interval == 25
    guard.observe(6, ok=True)  # fine at 12.5 s: halve
    assert guard.interval == 12.5 and guard.backoff and "recovering" in guard.backoff.message
    guard.observe(1, ok=True)
    assert guard.interval == 10 and guard.backoff is None
    guard.observe(0.1, ok=False, rate_limited=True)
    assert guard.interval == 20 and guard.backoff and guard.backoff.reason == "rate_limited"
