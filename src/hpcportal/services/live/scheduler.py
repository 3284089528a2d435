"""The after-refresh scheduler: slower work that runs on the latest snapshot only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from hpcportal.lifecycle import cancel_task
from hpcportal.services.snapshot import ClusterSnapshot

log = logging.getLogger(__package__)  # one logger name for the whole package


class LatestOnly:
    """Runs ``work`` on the newest snapshot, one run at a time: snapshots arriving
    during a run are coalesced into the next one, so slow work never piles up."""

    def __init__(
        self,
        name: str,
        work: Callable[[ClusterSnapshot], Coroutine[Any, Any, None]],
        *,
        leader_only: bool = False,
    ) -> None:
        self.name = name
        #: Work that must happen once across replicas: only the leader is kicked.
        self.leader_only = leader_only
        self.work = work
        self._latest: ClusterSnapshot | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"live-{self.name}")

    def kick(self, snap: ClusterSnapshot) -> None:
        self._latest = snap
        self._wake.set()

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            snap, self._latest = self._latest, None
            if snap is None:
                continue
            try:
                await self.work(snap)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live %s failed", self.name)
