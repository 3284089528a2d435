"""Live updates: one WebSocket per browser tab, fed from the shared snapshot.

After each refresh the hub computes the differences once (``services.changes``),
serializes each message variant once and hands the same string to every socket
that gets it; per socket there is only choosing and queueing. Each socket has a
bounded send queue drained by its own task, so a slow client never slows the others:
one that falls ``live_queue_messages`` behind is dropped (close code 1013).

Protocol (JSON text frames)::

    client -> server
      {"type": "subscribe", "channels": [...]}     jobs, nodes, cluster, notifications,
      {"type": "unsubscribe", "channels": [...]}   job_output:<job id>
      {"type": "ping"}
    server -> client
      {"type": "hello", "user": "alice", "generation": N}            after accepting
      {"type": "jobs", "generation": N, "changed": [Job], "removed": ["id", ...]}
      {"type": "nodes", "generation": N, "changed": [Node], "removed": ["name", ...]}
      {"type": "cluster", "generation": N, "summary": ClusterSummary}
      {"type": "notification", "notification": Notification, "unread": N}
      {"type": "job_output", "job_id": "123", "stream": "stdout", "offset": N, "data": "..."}
      {"type": "pong"}
      {"type": "error", "message": "..."}

``jobs``, ``nodes`` and ``cluster`` follow Slurm's ``PrivateData`` for each socket's
user (``services.visibility``): under ``jobs`` a socket hears only of the jobs its user
sees (a message with nothing for them is not sent), under ``nodes`` of no node.
``jobs`` carries a job's private part only to its owner and admins. Subscribing to
``nodes`` or ``cluster`` first sends the current state; the job list itself comes
from ``GET /api/v1/jobs`` (changes are idempotent, so applying one twice is harmless).
``job_output:<id>`` is for the job's owner. One follower per job (however many
sockets and Server-Sent Event streams watch it) reads the file as the owner every
``live_output_poll_seconds`` while the job runs, and stops when its last watcher
leaves; ``offset`` says where ``data`` starts (anything before it is at
``GET /api/v1/jobs/{id}/output``: a file longer than two chunks is followed from its
last chunk). A socket joining a follower that has already read
part of the file first gets an empty ``job_output`` message whose ``offset`` says how
far it has read, so it can fetch the part it missed.

Refusals happen before accepting: HTTP 401 (not authenticated) or 403 (foreign
origin), or close code 4401 / 4403 on a server that cannot answer HTTP there. Close
codes of an open socket: 4401 (logged out, session expired, token revoked), 1008
(20 bad messages), 1013 (too far behind: reconnect), 1001 or 1012 (the portal is
stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.models import ApiToken
from hpcportal.db.session import Database
from hpcportal.errors import InvalidInput, NotFound, PortalError
from hpcportal.runas import RunAs
from hpcportal.services import auth
from hpcportal.services.changes import SnapshotChanges, compute_changes, jobs_by_display_id
from hpcportal.services.cluster import SnapshotMeta, summarize
from hpcportal.services.identity import Principal
from hpcportal.services.job_output import (
    FINISHED,
    OutputChunk,
    Stream,
    output_path,
    read_chunk,
)
from hpcportal.services.jobs import JobDetail, validate_job_id, visible
from hpcportal.services.notifications import Delivery, NotificationDetector
from hpcportal.services.session_tracker import SessionTracker
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.services.visibility import Visibility, for_snapshot
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus

log = logging.getLogger(__name__)

CHANNELS = frozenset({"jobs", "nodes", "cluster", "notifications", "sessions"})
OUTPUT_PREFIX = "job_output:"
#: Bad client messages answered with an error before the socket is closed (1008).
MAX_BAD_MESSAGES = 20
MAX_MESSAGE_CHARS = 16 * 1024
MAX_CHANNELS_PER_MESSAGE = 64
MAX_OUTPUT_CHANNELS = 16
#: A job_output subscription waits this long for its job to reach the snapshot.
OUTPUT_WAIT_SECONDS = 30.0
#: Output files read side by side (each read is one run-as call, ~40 ms).
OUTPUT_PARALLEL = 8
#: A job the snapshot still calls pending is read every this many polls (it may have
#: started since), a running one at every poll.
QUEUED_POLL_EVERY = 2
CLOSE_TIMEOUT = 5.0

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

NOT_YOURS = "Only the job's owner can follow its output."
TOO_SLOW = "Too far behind; reconnect."
TOO_MANY_BAD = "Too many bad messages."
SESSION_EXPIRED = "Your session has expired; log in again."
TOKEN_REVOKED = "This API token is no longer valid."  # noqa: S105 (a message)

LIVE_SOCKETS = Gauge("hpcportal_live_sockets", "Open live WebSockets")
LIVE_MESSAGES = Counter("hpcportal_live_messages", "Messages queued to live WebSockets", ["type"])
LIVE_DROPPED = Counter("hpcportal_live_dropped", "Live WebSockets dropped for being too slow")
OUTPUT_FOLLOWERS = Gauge(
    "hpcportal_live_output_followers", "Job outputs being followed (one per job and reader)"
)
OUTPUT_READS = Counter(
    "hpcportal_live_output_reads", "Reads of job output files by followers (run-as calls)"
)

PONG = '{"type":"pong"}'
#: Nobody: sees only public fields (``visible`` memoizes public copies per snapshot).
_PUBLIC_VIEWER = Principal(username="", uid=-1, gid=-1, groups=(), role="user")


# --- Origin check (cross-site WebSocket hijacking) ------------------------------------------


#: ``scheme://host[:port]`` and nothing else: no userinfo, path, query or fragment.
_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` (lower case, default port made explicit), or ``None``.

    An ``Origin`` header is exactly a scheme, a host and an optional port (RFC 6454),
    so anything else is refused rather than parsed leniently: ``user@host`` (a lenient
    parser reads ``http://evil.example@127.0.0.1:8080`` as host ``127.0.0.1``), a path,
    query or fragment, ``null``, an empty host, port 0 or above 65535, a port with a
    leading zero, a scheme other than http(s), an IPv6 zone, a dotted number that is
    not an IPv4 address (``127.1``) and surrounding whitespace.
    """
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return None
    scheme, host = match["scheme"].lower(), match["host"].lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[scheme]
    if port > 65535:
        return None
    try:
        if host.startswith("["):
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        elif host.replace(".", "").isdigit() or host.rsplit(".", 1)[-1].isdigit():
            host = str(ipaddress.IPv4Address(host))  # refuses 127.1, 0x7f.1, 256.0.0.1
    except ValueError:
        return None
    return f"{scheme}://{host}:{port}"


def origin_allowed(
    origin: str | None, scheme: str, host: str | None, allowed: Iterable[str] = ()
) -> bool:
    """A browser's ``Origin`` must be the portal's own (scheme, host and port of the
    request) or one of ``allowed``; both are compared as parsed (scheme, host, port)
    triples, never as strings or prefixes. No ``Origin`` at all is a non-browser client.
    """
    if origin is None:
        return True
    theirs = normalize_origin(origin)
    if theirs is None:
        return False  # "null" (sandboxed frames, files), userinfo, paths, garbage
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    own = normalize_origin(f"{http_scheme}://{host}") if host else None
    if theirs == own:
        return True
    # An administrator may have written "https://ui.example.org/" in the settings.
    return theirs in {normalize_origin(a.strip().rstrip("/")) for a in allowed}


# --- Sockets and who is on them ----------------------------------------------------------


class LiveSocket(Protocol):
    """What the hub needs of a WebSocket (Starlette's ``WebSocket`` is one)."""

    async def accept(self) -> None: ...

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveIdentity:
    """Who opened a socket, and with which credential (to close it when that ends)."""

    principal: Principal
    jti: str | None = None
    token_id: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class Connection:
    socket: LiveSocket
    identity: LiveIdentity
    limit: int
    channels: set[str] = field(default_factory=set)
    outputs: dict[str, Follower] = field(default_factory=dict)
    bad_messages: int = 0
    closed: bool = False
    sender: asyncio.Task[None] | None = None
    queue: asyncio.Queue[str | _Close] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue()

    @property
    def user(self) -> str:
        return self.identity.principal.username

    @property
    def is_admin(self) -> bool:
        return self.identity.principal.is_admin

    def behind(self) -> bool:
        return self.queue.qsize() >= self.limit


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """What a follower tells a Server-Sent Events watcher: a chunk it read, that the
    job has finished and everything was read (``end``), or why it stopped (``error``)."""

    kind: Literal["output", "end", "error"]
    chunk: OutputChunk | None = None
    message: str = ""


@dataclass(eq=False)
class OutputWatch:
    """One Server-Sent Events stream watching a follower (``LiveHub.watch_output``)."""

    follower: Follower
    queue: asyncio.Queue[OutputEvent] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class Follower:
    """One user's reading of one job's output, shared by all their sockets and streams;
    its task (``LiveHub._follow_loop``) runs while anyone watches."""

    principal: Principal
    job_id: str
    created: float = field(default_factory=time.monotonic)
    offsets: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    finished_streams: set[str] = field(default_factory=set)
    subscribers: set[Connection] = field(default_factory=set)
    watches: set[OutputWatch] = field(default_factory=set)
    verified: bool = False
    done: bool = False
    task: asyncio.Task[None] | None = None
    queued_polls: int = 0

    @property
    def watched(self) -> bool:
        return bool(self.subscribers or self.watches)


class _Latest:
    """Runs ``work`` on the newest snapshot, one run at a time: snapshots arriving
    during a run are coalesced into the next one, so slow work never piles up."""

    def __init__(
        self, name: str, work: Callable[[ClusterSnapshot], Coroutine[Any, Any, None]]
    ) -> None:
        self.name = name
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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


def _message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def _no_job(job_id: str) -> str:
    """Also said of a job the user may not see (``PrivateData=jobs``): Slurm's word."""
    return f"No job {job_id} in the queue."


def error_message(text: str) -> str:
    return _message("error", message=text)


# --- The hub --------------------------------------------------------------------------------


class LiveHub:
    """All live sockets of one portal process, fed after each snapshot refresh."""

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
        self._workers = [
            _Latest("notifications", self._notify),
            _Latest("sessions", self._check_sessions),
            _Latest("interactive", self._track_interactive),
        ]
        self._listening = False

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._listening:
            self.snapshot.add_listener(self.on_refresh)
            self._listening = True
        for worker in self._workers:
            worker.start()

    async def stop(self) -> None:
        for worker in self._workers:
            await worker.stop()
        for follower in list(self._followers.values()):
            await self._stop_follower(follower)
        for conn in list(self._connections):
            self.close(conn, CLOSE_GOING_AWAY, "The portal is stopping.", graceful=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT + 1)

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    # --- after each refresh -----------------------------------------------------------

    def on_refresh(self, previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        """The snapshot listener: push the differences now, kick the slower work."""
        self._current = current
        if self._connections:
            self.publish(compute_changes(previous, current), current, previous)
        for worker in self._workers:
            worker.kick(current)

    def publish(
        self,
        changes: SnapshotChanges,
        snap: ClusterSnapshot,
        previous: ClusterSnapshot | None = None,
    ) -> None:
        """Queue this refresh's ``jobs``, ``nodes`` and ``cluster`` messages.

        ``previous`` tells whose the removed jobs were, so a socket whose user may not
        see them (``PrivateData=jobs``) is not told their ids either.
        """
        by_channel: dict[str, list[Connection]] = {"jobs": [], "nodes": [], "cluster": []}
        for conn in self._connections:
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
                public[i] = visible(job, _PUBLIC_VIEWER, snap).model_dump_json()
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
                if isinstance(item, _Close):
                    await self._close_socket(conn, item.code, item.reason)
                    return
                await conn.socket.send_text(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send
            self._forget(conn)

    def close(self, conn: Connection, code: int, reason: str, *, graceful: bool = True) -> None:
        """Close a socket: after what is already queued (``graceful``), or at once."""
        if conn.closed:
            return
        self._forget(conn)
        if graceful and conn.sender is not None and not conn.sender.done():
            conn.queue.put_nowait(_Close(code, reason))
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

    # --- registering ----------------------------------------------------------------------

    def register(self, socket: LiveSocket, identity: LiveIdentity) -> Connection:
        conn = Connection(socket, identity, self.settings.live_queue_messages)
        self._connections.add(conn)
        self._by_user.setdefault(conn.user, set()).add(conn)
        LIVE_SOCKETS.inc()
        return conn

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
        for job_id in list(conn.outputs):
            self._unfollow(conn, job_id)
        LIVE_SOCKETS.dec()

    # --- one socket -------------------------------------------------------------------------

    async def serve(self, socket: LiveSocket, identity: LiveIdentity) -> None:
        """Accept, greet, then read client messages until the socket closes."""
        await socket.accept()
        conn = self.register(socket, identity)
        generation = self.snapshot.health().generation
        conn.queue.put_nowait(_message("hello", user=conn.user, generation=generation))
        conn.sender = asyncio.create_task(self._send_loop(conn), name="live-send")
        try:
            while True:
                message = await socket.receive()
                kind = message.get("type")
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive" or conn.closed:
                    continue
                text = message.get("text")
                if text is None:
                    self.bad_message(conn, "Send JSON text frames, not binary ones.")
                else:
                    self.handle(conn, text)
        except Exception as exc:  # the transport failed under us
            log.debug("live socket of %s ended: %s", conn.user, exc)
        finally:
            self._forget(conn)
            if conn.sender is not None and not conn.sender.done():
                conn.sender.cancel()

    def bad_message(self, conn: Connection, text: str) -> None:
        conn.bad_messages += 1
        self._push(conn, error_message(text), "error")
        if conn.bad_messages >= MAX_BAD_MESSAGES:
            self.close(conn, CLOSE_POLICY, TOO_MANY_BAD)

    def handle(self, conn: Connection, text: str) -> None:
        """One client message: answered with an error if bad, never closed for one."""
        if len(text) > MAX_MESSAGE_CHARS:
            self.bad_message(conn, f"Messages are at most {MAX_MESSAGE_CHARS} characters.")
            return
        try:
            message = json.loads(text)
        except ValueError:
            self.bad_message(conn, 'Messages are JSON objects with a "type".')
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            self._push(conn, PONG, "pong")
            return
        if kind not in ("subscribe", "unsubscribe"):
            self.bad_message(
                conn, f"Unknown message type {kind!r}: use subscribe, unsubscribe or ping."
            )
            return
        channels = message.get("channels")
        if (
            not isinstance(channels, list)
            or not all(isinstance(c, str) for c in channels)
            or len(channels) > MAX_CHANNELS_PER_MESSAGE
        ):
            self.bad_message(
                conn,
                f'"channels" is a list of at most {MAX_CHANNELS_PER_MESSAGE} channel names.',
            )
            return
        act = self._subscribe if kind == "subscribe" else self._unsubscribe
        problems = [p for p in (act(conn, c) for c in dict.fromkeys(channels)) if p]
        if problems:
            self.bad_message(conn, " ".join(problems))

    def _subscribe(self, conn: Connection, channel: str) -> str | None:
        if channel.startswith(OUTPUT_PREFIX):
            return self._follow(conn, channel)
        if channel not in CHANNELS:
            known = ", ".join(sorted(CHANNELS))
            return f"Unknown channel {channel[:80]!r}: use {known} or {OUTPUT_PREFIX}<job id>."
        if channel in conn.channels:
            return None
        conn.channels.add(channel)
        snap = self._current
        if snap is not None and channel == "cluster":
            self._push(conn, self._cluster_message(snap, self._visibility(conn, snap)), "cluster")
        elif (
            snap is not None
            and channel == "nodes"
            and not self._visibility(conn, snap).hides("nodes")
        ):
            self._push(conn, self._all_nodes_message(snap), "nodes")
        return None

    def _unsubscribe(self, conn: Connection, channel: str) -> str | None:
        if channel.startswith(OUTPUT_PREFIX):
            self._unfollow(conn, channel[len(OUTPUT_PREFIX) :])
        conn.channels.discard(channel)
        return None

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
            return NOT_YOURS if self._visibility(conn, snap).sees_job(job) else _no_job(job_id)
        follower = self._follower(conn.identity.principal, job_id)
        for stream, offset in follower.offsets.items():
            if offset > 0:  # already read past this: say so, the client fetches the gap
                marker = _message(
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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
                self._end_follower(follower, _no_job(follower.job_id))
            return
        reader = follower.principal
        if job.user != reader.username and not reader.is_admin:
            sees = for_snapshot(reader, snap).sees_job(job)
            self._end_follower(follower, NOT_YOURS if sees else _no_job(follower.job_id))
            return
        follower.verified = True
        if job.status is JobStatus.QUEUED_HELD:
            return  # nothing written yet
        if job.status is JobStatus.QUEUED:
            # It may have started since the snapshot was taken: look now and then.
            follower.queued_polls += 1
            if follower.queued_polls % QUEUED_POLL_EVERY != 1:
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
        if offset == 0 and chunk.size > 2 * limit:
            # A long file met for the first time: follow from its last chunk rather than
            # send every watcher all of it (pages show the tail; the rest is at GET /output).
            follower.offsets[stream] = chunk.size - limit
            return
        if chunk.data:
            follower.offsets[stream] = chunk.next_offset
            text = _message(
                "job_output", job_id=follower.job_id, stream=stream, offset=offset, data=chunk.data
            )
            self._send_all(list(follower.subscribers), text, "job_output")
            for watch in list(follower.watches):
                self._tell(watch, OutputEvent("output", chunk))
        if chunk.finished and chunk.eof:
            follower.finished_streams.add(stream)

    # --- notifications -----------------------------------------------------------------------

    async def _notify(self, snap: ClusterSnapshot) -> None:
        if self.detector is None:
            return
        deliveries = await run_in_threadpool(self.detector.process, snap)
        self.deliver(deliveries)

    def deliver(self, deliveries: Iterable[Delivery]) -> None:
        """Push stored notifications to their owner's sockets on ``notifications``."""
        for d in deliveries:
            members = [
                c for c in self._by_user.get(d.username, ()) if "notifications" in c.channels
            ]
            if not members:
                continue
            body = d.notification.model_dump_json()
            text = f'{{"type":"notification","notification":{body},"unread":{d.unread}}}'
            self._send_all(members, text, "notification")

    # --- interactive app sessions ------------------------------------------------------------

    async def _track_interactive(self, snap: ClusterSnapshot) -> None:
        """Move interactive sessions along and tell their owners (channel ``sessions``)."""
        if self.tracker is None:
            return
        changed = await run_in_threadpool(self.tracker.reconcile, snap)
        for username, session in changed:
            self.push_session(username, session)

    def push_session(self, username: str, session: BaseModel) -> None:
        """Tell ``username``'s sockets on ``sessions`` about one session (also used by
        the API right after a launch, delete or share, so other tabs hear at once)."""
        members = [c for c in self._by_user.get(username, ()) if "sessions" in c.channels]
        if members:
            text = f'{{"type":"session","session":{session.model_dump_json()}}}'
            self._send_all(members, text, "session")

    # --- sessions that end ------------------------------------------------------------------

    def session_ended(self, jti: str) -> None:
        """A token was revoked (logout): close its sockets. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._close_session, jti)

    def _close_session(self, jti: str) -> None:
        for conn in list(self._connections):
            if conn.identity.jti == jti:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)

    async def _check_sessions(self, _: ClusterSnapshot) -> None:
        """Once per refresh: close sockets whose login expired or was revoked elsewhere
        (another replica's logout), and those of revoked or expired API tokens."""
        conns = list(self._connections)
        if not conns:
            return
        if any(c.identity.jti for c in conns) and self.revocations.needs_sync():
            await run_in_threadpool(self._sync_revocations)
        now = auth.utcnow()
        for conn in conns:
            ident = conn.identity
            if ident.jti is not None and ident.jti in self.revocations:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)
            elif ident.expires_at is not None and ident.expires_at <= now:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, SESSION_EXPIRED)
        token_ids = {c.identity.token_id for c in conns if c.identity.token_id is not None}
        every = max(self.settings.api_token_cache_seconds, 5.0)
        if token_ids and time.monotonic() - self._tokens_checked >= every:
            self._tokens_checked = time.monotonic()
            valid = await run_in_threadpool(self._valid_tokens, token_ids)
            for conn in conns:
                if conn.identity.token_id is not None and conn.identity.token_id not in valid:
                    self.close(conn, CLOSE_NOT_AUTHENTICATED, TOKEN_REVOKED)

    def _sync_revocations(self) -> None:
        with self.database.session() as session:
            self.revocations.sync(session)

    def _valid_tokens(self, token_ids: set[int]) -> set[int]:
        now = auth.utcnow()
        with self.database.session() as session:
            rows = session.scalars(
                select(ApiToken.id).where(
                    ApiToken.id.in_(sorted(token_ids)),
                    ApiToken.revoked_at.is_(None),
                    or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
                )
            ).all()
        return set(rows)
