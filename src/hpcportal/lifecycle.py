"""The process's background tasks, started and stopped in one place.

The app factory registers each long-lived part that has work of its own (the database,
the snapshot refresher, the live hub and its workers, the disk watcher, the terminals'
reaper, the node-proxy client pool) with one ``TaskRunner``. The lifespan starts them in
registration order and stops them in reverse, so a part stops before what it uses. A
part that fails to stop is logged and the others still stop: shutdown never ends half
way through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a part's background task and wait until it has ended (its ``finally``
    blocks have run), so a stopped part leaves nothing running; None does nothing."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Periodic:
    """A part's background loop: ``tick`` every ``seconds()`` from ``start`` to ``stop``.

    A failing round is logged to ``logger`` as ``failed`` (with its traceback) and the
    loop goes on; a second ``start`` does nothing. Leader-only work (the sdiag sampler,
    scheduled backups) checks leadership in its ``tick``, so every replica runs the loop.
    """

    def __init__(
        self,
        name: str,
        tick: Step,
        seconds: Callable[[], float],
        logger: logging.Logger,
        failed: str,
    ) -> None:
        self.name, self.tick, self.seconds = name, tick, seconds
        self.logger, self.failed = logger, failed
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                self.logger.exception(self.failed)
            await asyncio.sleep(self.seconds())


@dataclass(frozen=True)
class Part:
    """One registered part: how to start it (None: nothing to start) and stop it."""

    name: str
    start: Step | None
    stop: Step | None


@dataclass
class TaskRunner:
    """Start all in order, stop all in reverse; only started parts are stopped."""

    parts: list[Part] = field(default_factory=list)
    _started: list[Part] = field(default_factory=list)

    def add(self, name: str, *, start: Step | None = None, stop: Step | None = None) -> None:
        self.parts.append(Part(name, start, stop))

    async def start_all(self) -> None:
        """Start every part; if one fails, stop those already started and re-raise."""
        for part in self.parts:
            try:
                if part.start is not None:
                    await part.start()
            except BaseException:
                log.exception("Starting %s failed; stopping what had started", part.name)
                await self.stop_all()
                raise
            self._started.append(part)

    async def stop_all(self) -> None:
        """Stop the started parts in reverse order, each even if another failed."""
        while self._started:
            part = self._started.pop()
            if part.stop is None:
                continue
            try:
                await part.stop()
            except Exception:
                log.exception("Stopping %s failed", part.name)
