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
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


class PeriodicPart(ABC):
    """A background part that is one ``Periodic`` loop, started only when ``enabled``.

    It exists so the parts that are nothing but a loop (the sdiag sampler, the usage
    ingester, delivery's sender and digests, the idle-GPU checker, scheduled backups, the
    report worker and scheduler) declare only what differs: the loop's ``loop_name``, the
    ``failed`` text logged to ``logger`` when a round raises, ``interval()`` (read again
    after every round, so a changed setting applies from the next one) and ``tick``. The
    base gives ``enabled`` (``interval() > 0``; a part may ask for more), ``start`` (does
    nothing when not enabled) and ``stop`` (safe without ``start``). The loop is made on
    first use, so subclasses need not call ``super().__init__()``.
    """

    loop_name: ClassVar[str]
    failed: ClassVar[str]
    logger: ClassVar[logging.Logger]

    @abstractmethod
    def interval(self) -> float:
        """Seconds between the end of one round and the start of the next."""

    @abstractmethod
    async def tick(self) -> object:
        """One round; what it returns is for tests and callers, the loop ignores it."""

    @property
    def enabled(self) -> bool:
        return self.interval() > 0

    @functools.cached_property
    def _loop(self) -> Periodic:
        return Periodic(self.loop_name, self.tick, self.interval, self.logger, self.failed)

    async def start(self) -> None:
        if self.enabled:
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


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
