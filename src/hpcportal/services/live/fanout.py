"""The hub's state and WebSocket fan-out after each refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.runas import RunAs
from hpcportal.services import auth
from hpcportal.services.changes import SnapshotChanges, compute_changes, jobs_by_display_id
from hpcportal.services.cluster import summarize
from hpcportal.services.jobs import visible
from hpcportal.services.live.connection import CloseRequest, Connection, Follower
from hpcportal.services.live.protocol import (
    CLOSE_TIMEOUT,
    CLOSE_TRY_LATER,
    LIVE_DROPPED,
    LIVE_MESSAGES,
    LIVE_SOCKETS,
    OUTPUT_PARALLEL,
    PUBLIC_VIEWER,
    TOO_SLOW,
)
from hpcportal.services.live.scheduler import LatestOnly
from hpcportal.services.notifications import Delivery, NotificationDetector
from hpcportal.services.session_tracker import SessionTracker
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.services.visibility import Visibility, for_snapshot

log = logging.getLogger(__package__)  # one logger name for the whole package

#: Recent snapshots each hub keeps by generation, for sockets that resume (``resume.py``).
LOCAL_HISTORY = 8


class Relay(Protocol):
    """Carries pushes to every replica (``ha.replication``); each calls back the hub's
    ``deliver_here`` / ``push_session_here`` on its own sockets."""

    def deliveries(self, deliveries: list[Delivery]) -> None: ...

    def session(self, username: str, session_json: str) -> None: ...


class HubBase:
    """The hub's state and its fan-out: after each refresh, compute the differences
    once and queue the same strings to every socket that gets them."""

    def __init__(
        self,
        snapshot: SnapshotService,
        settings: Settings,
        *,
        database: Database,
        runas: RunAs,
        revocations: auth.RevocationList,
        detector: NotificationDetector | None = None,
        tracker: SessionTracker | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.database = database
        self.runas = runas
        self.revocations = revocations
        self.detector = detector
        self.tracker = tracker
        self.allowed_origins = tuple(settings.allowed_origins)
        self._connections: set[Connection] = set()
        self._by_user: dict[str, set[Connection]] = {}
        self._followers: dict[tuple[str, str], Follower] = {}
        self._reads = asyncio.Semaphore(OUTPUT_PARALLEL)
        self._current: ClusterSnapshot | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tokens_checked = 0.0
        self._workers = self.workers()
        self._listening = False
        #: With several replicas (``ha.replication``): whether this one leads (runs the
        #: ``leader_only`` workers), how pushes reach every replica, and where older
        #: snapshots are found for resuming sockets.
        self.leading: Callable[[], bool] = lambda: True
        self.relay: Relay | None = None
        self.history_source: Callable[[int], Awaitable[ClusterSnapshot | None]] | None = None
        self._history: dict[int, ClusterSnapshot] = {}

    def workers(self) -> list[LatestOnly]:
        """The slower work kicked after each refresh (``LiveHub`` names its own)."""
        return []

    # --- after each refresh -----------------------------------------------------------

    def on_refresh(self, previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        """The snapshot listener: push the differences now, kick the slower work."""
        self._current = current
        self._history[current.generation] = current
        while len(self._history) > LOCAL_HISTORY:
            del self._history[min(self._history)]
        if self._connections:
            self.publish(compute_changes(previous, current), current, previous)
        leading = self.leading()
        for worker in self._workers:
            if leading or not worker.leader_only:
                worker.kick(current)

    def publish(
        self,
        changes: SnapshotChanges,
        snap: ClusterSnapshot,
        previous: ClusterSnapshot | None = None,
        *,
        only: Iterable[Connection] | None = None,
    ) -> None:
        """Queue this refresh's ``jobs``, ``nodes`` and ``cluster`` messages (to every
        socket, or to ``only`` these: a resuming one).

        ``previous`` tells whose the removed jobs were, so a socket whose user may not
        see them (``PrivateData=jobs``) is not told their ids either.
        """
        by_channel: dict[str, list[Connection]] = {"jobs": [], "nodes": [], "cluster": []}
        for conn in self._connections if only is None else only:
            for channel, members in by_channel.items():
                if channel in conn.channels and not (
                    channel == "nodes" and self._visibility(conn, snap).hides("nodes")
                ):
                    members.append(conn)
        # After the first refresh, clients have the job list from GET /jobs (which waits
        # for it): sending every job to every socket would only cost time.
        if changes.jobs and by_channel["jobs"] and changes.previous_generation is not None:
            self._publish_jobs(changes, snap, by_channel["jobs"], previous)
        if changes.nodes and by_channel["nodes"]:
            text = self._nodes_message(
                snap.generation, changes.nodes_changed, changes.nodes_removed
            )
            self._send_all(by_channel["nodes"], text, "nodes")
        if (changes.cluster_changed or changes.partitions_changed) and by_channel["cluster"]:
            for conn in by_channel["cluster"]:
                text = self._cluster_message(snap, self._visibility(conn, snap))
                self._push(conn, text, "cluster")

    @staticmethod
    def _visibility(conn: Connection, snap: ClusterSnapshot) -> Visibility:
        return for_snapshot(conn.identity.principal, snap)

    def _publish_jobs(
        self,
        changes: SnapshotChanges,
        snap: ClusterSnapshot,
        members: list[Connection],
        previous: ClusterSnapshot | None = None,
    ) -> None:
        """One message per variant: which jobs the user sees (everyone alike without
        ``PrivateData=jobs``), and of those, public, admin, or one per owner.

        Each changed job is serialized at most twice (with and without its private
        part); a variant is those pieces joined, built once and shared by every
        socket that gets it.
        """
        changed = changes.jobs_changed
        full: dict[int, str] = {}
        public: dict[int, str] = {}

        def full_json(i: int) -> str:
            if i not in full:
                full[i] = changed[i].model_dump_json()
            return full[i]

        def public_json(i: int) -> str:
            job = changed[i]
            if job.private is None:
                return full_json(i)
            if i not in public:
                public[i] = visible(job, PUBLIC_VIEWER, snap).model_dump_json()
            return public[i]

        owners = {job.user for job in changed}
        before = jobs_by_display_id(previous) if previous is not None else {}
        head = f'{{"type":"jobs","generation":{snap.generation},"changed":['
        variants: dict[tuple[str, str, str], str] = {}
        for conn in members:
            vis = self._visibility(conn, snap)
            if conn.is_admin:
                key = (vis.jobs_key, "admin", "")
            elif conn.user in owners:
                key = (vis.jobs_key, "owner", conn.user)
            else:
                key = (vis.jobs_key, "public", "")
            text = variants.get(key)
            if text is None:
                _, kind, owner = key
                pieces = [
                    full_json(i)
                    if kind == "admin" or (kind == "owner" and job.user == owner)
                    else public_json(i)
                    for i, job in enumerate(changed)
                    if vis.sees_job(job)
                ]
                removed = [
                    job_id
                    for job_id in changes.jobs_removed
                    if not vis.hides("jobs") or ((old := before.get(job_id)) and vis.sees_job(old))
                ]
                text = ""
                if pieces or removed:
                    text = f'{head}{",".join(pieces)}],"removed":{json.dumps(removed)}}}'
                variants[key] = text
            if text:
                self._push(conn, text, "jobs")

    def _nodes_message(self, generation: int, nodes: Iterable[Any], removed: Iterable[str]) -> str:
        changed = ",".join(n.model_dump_json() for n in nodes)
        return (
            f'{{"type":"nodes","generation":{generation},"changed":[{changed}],'
            f'"removed":{json.dumps(list(removed))}}}'
        )

    def _cluster_message(self, snap: ClusterSnapshot, vis: Visibility) -> str:
        """The summary as ``vis`` sees it, built once per snapshot and ``view_key``."""

        def build() -> str:
            summary = summarize(snap, self.snapshot.health(), vis).model_dump_json()
            return f'{{"type":"cluster","generation":{snap.generation},"summary":{summary}}}'

        text: str = snap.memo(f"live:cluster_message:{vis.view_key}", build)
        return text

    def _all_nodes_message(self, snap: ClusterSnapshot) -> str:
        text: str = snap.memo(
            "live:nodes_message", lambda: self._nodes_message(snap.generation, snap.nodes, ())
        )
        return text

    # --- sending ------------------------------------------------------------------------

    def _send_all(self, members: Iterable[Connection], text: str, kind: str) -> None:
        for conn in members:
            self._push(conn, text, kind)

    def _push(self, conn: Connection, text: str, kind: str) -> None:
        """Queue one message; a socket too far behind is dropped, never waited for."""
        if conn.closed:
            return
        if conn.behind():
            LIVE_DROPPED.inc()
            log.info("dropping a live socket of %s: %d messages behind", conn.user, conn.limit)
            self.close(conn, CLOSE_TRY_LATER, TOO_SLOW, graceful=False)
            return
        conn.queue.put_nowait(text)
        LIVE_MESSAGES.labels(kind).inc()

    async def _send_loop(self, conn: Connection) -> None:
        try:
            while True:
                item = await conn.queue.get()
                if isinstance(item, CloseRequest):
                    await self._close_socket(conn, item.code, item.reason)
                    return
                await conn.socket.send_text(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._connections.discard(conn)
        mine = self._by_user.get(conn.user)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del self._by_user[conn.user]
        self._drop_outputs(conn)
        LIVE_SOCKETS.dec()

    def _drop_outputs(self, conn: Connection) -> None:
        """Stop following what ``conn`` followed (``OutputFollowing`` does job output)."""

    def close(self, conn: Connection, code: int, reason: str, *, graceful: bool = True) -> None:
        """Close a socket: after what is already queued (``graceful``), or at once."""
        if conn.closed:
            return
        self._forget(conn)
        if graceful and conn.sender is not None and not conn.sender.done():
            conn.queue.put_nowait(CloseRequest(code, reason))
            return
        if conn.sender is not None:
            conn.sender.cancel()
        self._spawn(self._close_socket(conn, code, reason))

    async def _close_socket(self, conn: Connection, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.socket.close(code, reason), CLOSE_TIMEOUT)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (stopped): nothing left to close
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
