"""Slurm load does not grow with readers: calls are counted at the executor."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

COMMANDS_PER_REFRESH = 4  # squeue, sinfo, scontrol show partition, scontrol show config


@pytest.fixture(scope="module")
def portal(make_portal: PortalFactory) -> RunningPortal:
    return make_portal(refresh_interval=0.5)


async def _readers(url: str, headers: dict[str, str], count: int, seconds: float) -> list[int]:
    """``count`` clients each reading /jobs in a loop for ``seconds``; answers per client."""
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def one() -> int:
            answered = 0
            while answered == 0 or time.monotonic() < deadline:
                r = await client.get(f"{url}/api/v1/jobs", params={"limit": 10})
                assert r.status_code == 200, r.text
                answered += 1
            return answered

        return list(await asyncio.gather(*(one() for _ in range(count))))


def _measure(portal: RunningPortal, readers: int, seconds: float) -> tuple[int, int, list[int]]:
    """Run readers over whole refresh cycles; return (slurm calls, refreshes, answers)."""
    headers = portal.login("alice", "alice-demo")
    snapshot, executor = portal.services.snapshot, portal.services.executor
    start_gen = portal.wait_for_generation(snapshot.health().generation)
    calls_before = sum(executor.calls[c] for c in ("squeue", "sinfo", "scontrol"))
    answers = asyncio.run(_readers(portal.url, headers, readers, seconds))
    end_gen = portal.wait_for_generation(snapshot.health().generation)
    calls_after = sum(executor.calls[c] for c in ("squeue", "sinfo", "scontrol"))
    return calls_after - calls_before, end_gen - start_gen, answers


def test_slurm_calls_do_not_depend_on_readers(portal: RunningPortal) -> None:
    calls_1, refreshes_1, answers_1 = _measure(portal, readers=1, seconds=3)
    calls_200, refreshes_200, answers_200 = _measure(portal, readers=200, seconds=3)
    print(
        f"\n1 reader: {sum(answers_1)} answers, {refreshes_1} refreshes, {calls_1} Slurm calls;"
        f" 200 readers: {sum(answers_200)} answers, {refreshes_200} refreshes,"
        f" {calls_200} Slurm calls"
    )
    # Every reader was answered: the 200 really read concurrently with the refresher.
    assert len(answers_200) == 200 and min(answers_200) >= 1 and min(answers_1) >= 1
    assert calls_1 == COMMANDS_PER_REFRESH * refreshes_1
    assert calls_200 == COMMANDS_PER_REFRESH * refreshes_200
    assert refreshes_1 >= 1 and refreshes_200 >= 1
