"""Following a job's output for live sockets and output watches."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.concurrency import run_in_threadpool

from hpcportal.errors import InvalidInput, NotFound, PortalError
from hpcportal.lifecycle import cancel_task
from hpcportal.services.cluster import SnapshotMeta
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import (
    FINISHED,
    Stream,
    output_path,
    read_chunk,
)
from hpcportal.services.jobs import JobDetail, validate_job_id
from hpcportal.services.live.connection import Connection, Follower, OutputEvent, OutputWatch
from hpcportal.services.live.fanout import HubBase
from hpcportal.services.live.protocol import (
    MAX_OUTPUT_CHANNELS,
    NOT_YOURS,
    OUTPUT_FOLLOWERS,
    OUTPUT_PREFIX,
    OUTPUT_READS,
    OUTPUT_WAIT_SECONDS,
    TOO_SLOW,
    error_message,
    make_message,
    no_job_message,
)
from hpcportal.services.snapshot import ClusterSnapshot
from hpcportal.services.visibility import for_snapshot
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__package__)  # one logger name for the whole package


class OutputFollowing(HubBase):
    """Job output: one follower per (viewer, job) reads new bytes as the owner and
    sends them to every socket and watch following that job."""

    def _drop_outputs(self, conn: Connection) -> None:
        for job_id in list(conn.outputs):
            self._unfollow(conn, job_id)

    # --- job output -------------------------------------------------------------------------

    def _follow(self, conn: Connection, channel: str) -> str | None:
        job_id = channel[len(OUTPUT_PREFIX) :]
        try:
            validate_job_id(job_id)
        except InvalidInput as exc:
            return exc.message
        if job_id in conn.outputs:
            return None
        if len(conn.outputs) >= MAX_OUTPUT_CHANNELS:
            return f"At most {MAX_OUTPUT_CHANNELS} job outputs per socket."
        snap = self._current
        job = snap.jobs_by_id.get(job_id) if snap is not None else None
        if snap is not None and job is not None and job.user != conn.user:
            return (
                NOT_YOURS if self._visibility(conn, snap).sees_job(job) else no_job_message(job_id)
            )
        follower = self._follower(conn.identity.principal, job_id)
        for stream, offset in follower.offsets.items():
            if offset > 0:  # already read past this: say so, the client fetches the gap
                marker = make_message(
                    "job_output", job_id=job_id, stream=stream, offset=offset, data=""
                )
                self._push(conn, marker, "job_output")
        follower.subscribers.add(conn)
        conn.outputs[job_id] = follower
        conn.channels.add(channel)
        return None

    def _follower(self, principal: Principal, job_id: str) -> Follower:
        """The follower of ``job_id``'s output as ``principal``, started if need be."""
        key = (principal.username, job_id)
        follower = self._followers.get(key)
        if follower is None:
            follower = self._followers[key] = Follower(principal, job_id)
            follower.task = asyncio.get_running_loop().create_task(
                self._follow_loop(follower), name=f"live-output-{job_id}"
            )
        return follower

    def _unfollow(self, conn: Connection, job_id: str) -> None:
        follower = conn.outputs.pop(job_id, None)
        conn.channels.discard(OUTPUT_PREFIX + job_id)
        if follower is None:
            return
        follower.subscribers.discard(conn)
        self._forget_follower_if_idle(follower)

    def watch_output(self, principal: Principal, job_id: str) -> OutputWatch:
        """Watch a job's output from a Server-Sent Events stream: the same follower as
        the sockets' (``principal`` may read it: the caller checked). Call
        ``unwatch_output`` when the stream ends."""
        watch = OutputWatch(self._follower(principal, job_id))
        watch.follower.watches.add(watch)
        if watch.follower.done:
            watch.queue.put_nowait(OutputEvent("end"))
        return watch

    def unwatch_output(self, watch: OutputWatch) -> None:
        watch.follower.watches.discard(watch)
        self._forget_follower_if_idle(watch.follower)

    def _tell(self, watch: OutputWatch, event: OutputEvent) -> None:
        """Queue an event for a stream; one too far behind is ended (it can resume)."""
        if watch.queue.qsize() >= self.settings.live_queue_messages:
            watch.follower.watches.discard(watch)
            watch.queue.put_nowait(OutputEvent("error", message=TOO_SLOW))
            self._forget_follower_if_idle(watch.follower)
            return
        watch.queue.put_nowait(event)

    def _forget_follower_if_idle(self, follower: Follower) -> None:
        """The last watcher left: stop reading (at once, not at the next poll)."""
        if follower.watched:
            return
        key = (follower.principal.username, follower.job_id)
        if self._followers.get(key) is follower:
            del self._followers[key]
        if follower.task is not None and not follower.task.done():
            follower.task.cancel()

    async def _stop_follower(self, follower: Follower) -> None:
        task = follower.task
        if task is not None and not task.done():
            await cancel_task(task)

    def _end_follower(self, follower: Follower, text: str | None) -> None:
        """Stop following; with ``text``, tell the watchers why and unsubscribe them."""
        follower.done = True
        for watch in list(follower.watches):
            self._tell(watch, OutputEvent("error", message=text) if text else OutputEvent("end"))
        if text is None:
            return
        for conn in list(follower.subscribers):
            self._push(conn, error_message(text), "error")
            self._unfollow(conn, follower.job_id)

    async def _follow_loop(self, follower: Follower) -> None:
        """Read the job's new output every ``live_output_poll_seconds`` while anyone
        watches: one task per job and reader, whatever the number of watchers."""
        OUTPUT_FOLLOWERS.inc()
        try:
            while follower.watched and not follower.done:
                started = time.monotonic()
                snap = self._current
                if snap is not None:
                    try:
                        await self._poll_one(follower, snap)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("following the output of %s failed", follower.job_id)
                if follower.done:
                    return
                took = time.monotonic() - started
                await asyncio.sleep(max(0.05, self.settings.live_output_poll_seconds - took))
        finally:
            OUTPUT_FOLLOWERS.dec()

    async def _poll_one(self, follower: Follower, snap: ClusterSnapshot) -> None:
        job = snap.jobs_by_id.get(follower.job_id)
        if job is None:
            if follower.verified:
                self._end_follower(follower, None)  # forgotten by slurmctld: nothing new
            elif time.monotonic() - follower.created > OUTPUT_WAIT_SECONDS:
                self._end_follower(follower, no_job_message(follower.job_id))
            return
        reader = follower.principal
        if job.user != reader.username and not reader.is_admin:
            sees = for_snapshot(reader, snap).sees_job(job)
            self._end_follower(follower, NOT_YOURS if sees else no_job_message(follower.job_id))
            return
        follower.verified = True
        if job.status in (JobStatus.QUEUED, JobStatus.QUEUED_HELD):
            # Nothing of this job is written yet. A file at its output path now belongs
            # to an earlier job with the same name (`--output=run.out`, or the same job
            # id on another cluster): Slurm truncates it when this job starts, so it is
            # not read before then. The read after an action tells when it started.
            return
        meta = SnapshotMeta.of(self.snapshot.health())
        detail = JobDetail(job=job, source="snapshot", snapshot=meta)
        streams = self._streams(job, detail)
        for stream in streams:
            if stream in follower.finished_streams or follower.done:
                continue
            async with self._reads:
                await self._read_stream(follower, detail, stream)
        if job.status in FINISHED and follower.finished_streams.issuperset(streams):
            self._end_follower(follower, None)

    @staticmethod
    def _streams(job: Job, detail: JobDetail) -> tuple[Stream, ...]:
        """stdout, and stderr when Slurm writes it to a file of its own."""
        if job.private is None or not job.private.stderr:
            return ("stdout",)
        try:
            separate = output_path(detail, "stderr") != output_path(detail, "stdout")
        except PortalError:
            return ("stdout",)
        return ("stdout", "stderr") if separate else ("stdout",)

    async def _read_stream(self, follower: Follower, detail: JobDetail, stream: Stream) -> None:
        offset = follower.offsets[stream]
        limit = self.settings.output_chunk_bytes
        OUTPUT_READS.inc()
        try:
            chunk = await run_in_threadpool(
                read_chunk, self.runas, follower.principal, detail, stream, offset, limit
            )
        except NotFound:  # finished without this file
            follower.finished_streams.add(stream)
            return
        except PortalError as exc:
            self._end_follower(
                follower, f"Cannot read the output of {follower.job_id}: {exc.message}"
            )
            return
        if chunk.size < offset:
            # Shorter than what was already sent: the file was truncated (Slurm starting
            # the job, or a requeue). Follow it again from its beginning.
            follower.offsets[stream] = 0
            return
        if offset == 0 and chunk.size > 2 * limit:
            # A long file met for the first time: follow from its last chunk rather than
            # send every watcher all of it (pages show the tail; the rest is at GET /output).
            follower.offsets[stream] = chunk.size - limit
            return
        if chunk.data:
            follower.offsets[stream] = chunk.next_offset
            text = make_message(
                "job_output", job_id=follower.job_id, stream=stream, offset=offset, data=chunk.data
            )
            self._send_all(list(follower.subscribers), text, "job_output")
            for watch in list(follower.watches):
                self._tell(watch, OutputEvent("output", chunk))
        if chunk.finished and chunk.eof:
            follower.finished_streams.add(stream)
