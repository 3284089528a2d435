"""Shared answers: one Prometheus request per key, however many people ask.

``SharedAnswers.get(key, fetch)`` returns the answer kept for ``key`` if it is younger
than ``ttl`` seconds; otherwise the first caller runs ``fetch`` and every caller who
asks meanwhile awaits that same request (single flight). A failure is not kept: the
callers waiting for it get the error, the next caller asks again. At most ``size``
answers are kept (least recently used go first).

Panel keys are (query, start, end, step) with the window aligned to the step
(``align``), so everyone watching the same job or node within one step asks the same
question, and 50 viewers cost Prometheus one query per refresh.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class SharedAnswers(Generic[T]):
    ttl: float
    size: int = 512
    clock: Callable[[], float] = time.monotonic
    #: Requests actually run (``fetch`` called), and answers served from the cache or
    #: from a request in flight.
    fetched: int = 0
    shared: int = 0
    _kept: OrderedDict[Hashable, tuple[float, T]] = field(default_factory=OrderedDict)
    _flying: dict[Hashable, asyncio.Future[T]] = field(default_factory=dict)

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        kept = self._kept.get(key)
        if kept is not None and self.clock() - kept[0] < self.ttl:
            self._kept.move_to_end(key)
            self.shared += 1
            return kept[1]
        flying = self._flying.get(key)
        if flying is not None:
            self.shared += 1
            return await asyncio.shield(flying)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flying[key] = future
        self.fetched += 1
        try:
            answer = await fetch()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(answer)
            if self.ttl > 0:
                self._kept[key] = (self.clock(), answer)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
            return answer
        finally:
            del self._flying[key]


def align(start: float, end: float, step: float, *, live: bool) -> tuple[float, float]:
    """The window on whole steps: the start down, the end down for a window that
    reaches now (a later end would be in the future) and up for one in the past."""
    first = math.floor(start / step) * step
    last = math.floor(end / step) * step if live else math.ceil(end / step) * step
    return first, max(last, first)


def panel_step(span: float, points: int, minimum: float) -> float:
    """A step giving about ``points`` points over ``span`` seconds: a whole multiple
    of ``minimum`` (so windows of similar length share steps, and keys)."""
    raw = max(span / points, minimum)
    return math.ceil(raw / minimum - 1e-9) * minimum
