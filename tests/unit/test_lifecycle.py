"""The task runner: parts start in order, stop in reverse, and one failure never
leaves the others running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hpcportal.lifecycle import TaskRunner


def _step(log: list[str], what: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        log.append(what)
        if fail:
            raise RuntimeError(what)

    return step


def test_parts_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    tasks = TaskRunner()
    tasks.add("a", start=_step(log, "start a"), stop=_step(log, "stop a"))
    tasks.add("b", stop=_step(log, "stop b"))  # nothing to start, still stopped
    tasks.add("c", start=_step(log, "start c"), stop=_step(log, "stop c"))
    asyncio.run(tasks.start_all())
    asyncio.run(tasks.stop_all())
    assert log == ["start a", "start c", "stop c", "stop b", "stop a"]


def test_a_failing_stop_is_logged_and_the_rest_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    tasks = TaskRunner()
    tasks.add("a", stop=_step(log, "stop a"))
    tasks.add("b", stop=_step(log, "stop b", fail=True))
    asyncio.run(tasks.start_all())
    asyncio.run(tasks.stop_all())
    assert log == ["stop b", "stop a"]
    assert any("Stopping b failed" in r.message for r in caplog.records)


def test_a_failing_start_stops_what_had_started_and_raises() -> None:
    log: list[str] = []
    tasks = TaskRunner()
    tasks.add("a", start=_step(log, "start a"), stop=_step(log, "stop a"))
    tasks.add("b", start=_step(log, "start b", fail=True), stop=_step(log, "stop b"))
    tasks.add("c", start=_step(log, "start c"), stop=_step(log, "stop c"))
    with pytest.raises(RuntimeError, match="start b"):
        asyncio.run(tasks.start_all())
    assert log == ["start a", "start b", "stop a"]
    asyncio.run(tasks.stop_all())  # nothing left to stop
    assert log == ["start a", "start b", "stop a"]
