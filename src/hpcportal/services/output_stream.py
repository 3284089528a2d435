"""A job's output as Server-Sent Events (``GET /api/v1/jobs/{id}/output/stream``).

A stream of a job that still runs watches the job's one shared follower
(``LiveHub.watch_output``): however many streams and pages watch, the file is read
once per poll. A stream reads the file itself only to catch up: from where it starts
(``offset``, or ``Last-Event-ID`` when a browser resumes) to where the follower is,
and to the end once the job has finished.

Events: ``output`` (an ``OutputChunk`` as JSON; its ``id:`` is the byte offset after
it, so ``Last-Event-ID`` resumes exactly there), ``end`` (the job finished and
everything was sent) and ``error`` (following stopped: why). A comment line
(``: keep-alive``) is sent after ``sse_keepalive_seconds`` without events, so
proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from hpcportal.errors import InvalidInput, NotFound, PortalError
from hpcportal.limits import INT64_MAX
from hpcportal.runas import RunAs
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import (
    OutputChunk,
    Stream,
    job_finished,
    output_path,
    read_chunk,
)
from hpcportal.services.jobs import JobDetail
from hpcportal.services.live import LiveHub, OutputEvent

#: Answer headers: an event stream must be neither cached nor buffered by a proxy.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEP_ALIVE = b": keep-alive\n\n"
#: Browsers reconnect after this many milliseconds when the connection drops.
RETRY = b"retry: 2000\n\n"
#: How often a quiet stream checks that its client is still there.
DISCONNECT_CHECK = 1.0


def resume_offset(last_event_id: str | None, offset: int) -> int:
    """Where to start: the ``Last-Event-ID`` a browser resumes with, else ``offset``."""
    if last_event_id is None or not last_event_id.strip():
        return offset
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > INT64_MAX:
        raise InvalidInput("Last-Event-ID is the byte offset of an earlier event.")
    return int(text)


def event(kind: str, data: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


def output_event(chunk: OutputChunk) -> bytes:
    return event("output", chunk.model_dump_json(), chunk.next_offset)


def end_event(position: int) -> bytes:
    return event("end", json.dumps({"next_offset": position}), position)


@dataclass
class OutputStream:
    """One client's stream: where it is, and how to read and watch."""

    hub: LiveHub
    runas: RunAs
    who: Principal
    job_id: str
    stream: Stream
    position: int
    chunk_bytes: int
    keepalive: float
    #: The job as the portal knows it now (snapshot, else accounting).
    detail: Callable[[], Awaitable[JobDetail]]
    #: Whether the client has gone (``Request.is_disconnected``).
    disconnected: Callable[[], Awaitable[bool]]

    async def events(self) -> AsyncIterator[bytes]:
        yield RETRY
        detail = await self.detail()
        if job_finished(detail):
            async for item in self._read_to_end(detail):
                yield item
            return
        watch = self.hub.watch_output(self.who, self.job_id)
        try:
            same_file = self._same_file(detail)
            target = watch.follower.offsets[self.stream if not same_file else "stdout"]
            async for item in self._catch_up(detail, target):
                yield item
            quiet_since = time.monotonic()
            while True:
                try:
                    news = await asyncio.wait_for(watch.queue.get(), DISCONNECT_CHECK)
                except TimeoutError:
                    if await self.disconnected():
                        return  # the last viewer leaving stops the follower at once
                    if time.monotonic() - quiet_since >= self.keepalive:
                        quiet_since = time.monotonic()
                        yield KEEP_ALIVE
                    continue
                quiet_since = time.monotonic()
                async for item in self._relay(news, same_file):
                    yield item
                if news.kind != "output":
                    return
        finally:
            self.hub.unwatch_output(watch)

    async def _relay(self, news: OutputEvent, same_file: bool) -> AsyncIterator[bytes]:
        if news.kind == "error":
            yield event("error", json.dumps({"detail": news.message}))
            return
        if news.kind == "end":
            async for item in self._read_to_end(await self.detail()):
                yield item
            return
        chunk = news.chunk
        if chunk is None or (chunk.stream != self.stream and not same_file):
            return
        if chunk.offset > self.position:  # the follower is ahead: read the gap first
            async for item in self._catch_up(await self.detail(), chunk.offset):
                yield item
        tail = _from(chunk, self.position)
        if tail is not None:
            self.position = tail.next_offset
            yield output_event(tail)

    def _same_file(self, detail: JobDetail) -> bool:
        """stderr written into stdout's file (no ``--error``): the follower reads it
        as stdout."""
        if self.stream == "stdout":
            return False
        try:
            return output_path(detail, "stderr") == output_path(detail, "stdout")
        except PortalError:
            return False

    async def _read(self, detail: JobDetail, limit: int) -> OutputChunk:
        return await run_in_threadpool(
            read_chunk, self.runas, self.who, detail, self.stream, self.position, limit
        )

    async def _catch_up(self, detail: JobDetail, target: int) -> AsyncIterator[bytes]:
        """Read from where this stream is up to ``target`` (this client only)."""
        while self.position < target:
            try:
                chunk = await self._read(detail, min(self.chunk_bytes, target - self.position))
            except NotFound:
                return
            if not chunk.data:
                return
            self.position = chunk.next_offset
            yield output_event(chunk)

    async def _read_to_end(self, detail: JobDetail) -> AsyncIterator[bytes]:
        """The job has finished: send the rest of the file, then ``end``."""
        while True:
            try:
                chunk = await self._read(detail, self.chunk_bytes)
            except NotFound:  # finished without an output file
                break
            if chunk.data:
                self.position = chunk.next_offset
                yield output_event(chunk)
            if chunk.eof:
                break
        yield end_event(self.position)


def _from(chunk: OutputChunk, position: int) -> OutputChunk | None:
    """The part of ``chunk`` at or after byte ``position`` (None: nothing new)."""
    if chunk.next_offset <= position:
        return None
    if chunk.offset >= position:
        return chunk
    data = chunk.data.encode()[position - chunk.offset :].decode("utf-8", "replace")
    return chunk.model_copy(update={"offset": position, "data": data})
