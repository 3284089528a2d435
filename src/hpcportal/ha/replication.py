"""The leader's snapshot, served by every replica; pushes that cross replicas.

The leader (``Leadership.is_leader``) is the only replica whose refresher reads Slurm
(``SnapshotService.leading``). After each new snapshot it stores it in Redis, as the
latest and under its generation, and announces the generation (``RedisBus``). Every
other replica installs it (``SnapshotService.install``), which runs the same listeners
as a refresh of its own: its live sockets get the differences computed locally, from
the snapshot they had. So Slurm sees one refresh per interval whatever the number of
replicas, and a socket's messages on any replica carry the same generation numbers.

Snapshots cross as pydantic JSON (the snapshot models are pydantic models; its Rust
encoder is the fastest path for them, and a msgspec encoding would first have to turn
every model into builtins), compressed with zlib level 1: a large queue shrinks ~10x
for a millisecond or two. Publishing coalesces: if snapshots come faster than Redis
takes them, only the newest is sent; a follower's differences are computed from the
snapshot it has, so nothing is lost, and resuming sockets fall back to a full reload
for a generation that was never stored.

Other topics: a follower's ``request_refresh`` after an action goes to the leader
(``refresh``), notifications and interactive-session changes found by the leader reach
their owners' sockets on every replica (``deliveries``, ``sessions``), and a failed
refresh on the leader marks every replica's snapshot stale (``snapshots`` carries
``error:<code>:<message>`` then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import Counter
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool

from hpcportal.ha.leadership import Leadership
from hpcportal.ha.redis_bus import BusError, RedisBus, Topic
from hpcportal.services.live import LiveHub
from hpcportal.services.notifications import Delivery, NotificationDetector, NotificationOut
from hpcportal.services.snapshot import ClusterSnapshot, SnapshotService
from hpcportal.slurm.models import Job, Node, Partition, PrivateData, SlurmRoles

log = logging.getLogger(__name__)

PUBLISHED = Counter("hpcportal_snapshots_published", "Snapshots the leader published")
INSTALLED = Counter("hpcportal_snapshots_installed", "Leader snapshots this follower installed")
#: Seconds between attempts when Redis does not answer.
RETRY_SECONDS = 1.0
#: A follower still without a snapshot the leader announced this long ago is unready.
LAG_LIMIT_SECONDS = 5.0


class SnapshotWire(BaseModel):
    """A ``ClusterSnapshot`` as it crosses Redis (its indexes are rebuilt on arrival)."""

    generation: int
    taken_at: datetime
    duration: float
    jobs: list[Job]
    nodes: list[Node]
    partitions: list[Partition]
    private_data: PrivateData
    roles: SlurmRoles
    #: The leader's last refresh error, if its snapshot is stale because of one.
    error: str | None = None
    error_code: str | None = None


class DeliveryWire(BaseModel):
    username: str
    notification: NotificationOut
    unread: int


_DELIVERIES = TypeAdapter(list[DeliveryWire])


def encode_snapshot(snap: ClusterSnapshot) -> bytes:
    wire = SnapshotWire(
        generation=snap.generation,
        taken_at=snap.taken_at,
        duration=snap.duration,
        jobs=list(snap.jobs),
        nodes=list(snap.nodes),
        partitions=list(snap.partitions),
        private_data=snap.private_data,
        roles=snap.roles,
    )
    return zlib.compress(wire.model_dump_json().encode(), 1)


def decode_snapshot(payload: bytes) -> ClusterSnapshot:
    """The snapshot, its age measured on this replica's clock from the leader's
    ``taken_at`` (replicas keep their clocks in sync, as the lease needs anyway)."""
    wire = SnapshotWire.model_validate_json(zlib.decompress(payload))
    built = ClusterSnapshot.build(
        wire.generation, wire.duration, wire.jobs, wire.nodes, wire.partitions,
        wire.private_data, wire.roles,
    )  # fmt: skip
    age = max(0.0, (datetime.now(UTC) - wire.taken_at).total_seconds())
    return replace(built, taken_at=wire.taken_at, monotonic=time.monotonic() - age)


class Replicator:
    """Wires one replica's snapshot service, live hub and background work to the bus
    and the lease (``wire`` at composition time; ``start``/``stop`` as a task)."""

    def __init__(
        self,
        bus: RedisBus,
        leadership: Leadership,
        snapshot: SnapshotService,
        hub: LiveHub,
        detector: NotificationDetector | None = None,
    ) -> None:
        self.bus = bus
        self.leadership = leadership
        self.snapshot = snapshot
        self.hub = hub
        self.detector = detector
        self.connected = False
        self._published = 0
        self._pending: ClusterSnapshot | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The newest generation announced on the bus, and when it was first heard.
        self._announced = 0
        self._announced_at = 0.0

    def wire(self) -> None:
        """Hook into the parts (before anything starts)."""
        self.snapshot.leading = self.leadership.is_leader
        self.snapshot.forward_refresh = self.forward_refresh
        self.snapshot.on_failure = self.leader_failed
        self.snapshot.add_listener(self._on_snapshot)
        self.hub.leading = self.leadership.is_leader
        self.hub.relay = self
        self.hub.history_source = self.snapshot_at
        self.leadership.add_listener(self._on_role)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(BusError):
            await self._install_latest()
        self._tasks = [
            asyncio.create_task(self._listen(), name="ha-listen"),
            asyncio.create_task(self._publish_loop(), name="ha-publish"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for send in list(self._sends):
            send.cancel()
        await self.bus.close()

    def _on_role(self, leading: bool) -> None:
        if leading and self.detector is not None:
            self.detector.forget()  # the old leader may have stored events since
        if leading:
            log.info("%s is now the leader: it reads Slurm", self.leadership.replica_id)
        else:
            log.info("%s follows: it serves the leader's snapshots", self.leadership.replica_id)

    # --- the leader publishes ------------------------------------------------------------

    def _on_snapshot(self, _previous: ClusterSnapshot | None, current: ClusterSnapshot) -> None:
        if self.leadership.is_leader() and current.generation > self._published:
            self._pending = current
            self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            snap, self._pending = self._pending, None
            if snap is None or snap.generation <= self._published:
                continue
            try:
                payload = await run_in_threadpool(encode_snapshot, snap)
                await self.bus.put_snapshot(snap.generation, payload)
            except BusError as exc:
                log.warning("cannot publish snapshot %d: %s", snap.generation, exc)
                if self._pending is None:
                    self._pending = snap
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            self._published = snap.generation
            PUBLISHED.inc()

    # --- every replica listens -------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                async for topic, data in self.bus.listen():
                    if not self.connected:
                        self.connected = True
                        await self._install_latest()  # what was published while away
                    await self._handle(topic, data)
            except BusError as exc:
                if self.connected:
                    log.warning("lost Redis: %s", exc)
                self.connected = False
            except Exception:  # one bad message must not stop replication
                log.exception("replication message failed")
            await asyncio.sleep(RETRY_SECONDS)

    async def _handle(self, topic: Topic, data: bytes) -> None:
        if topic == "snapshots":
            await self._on_generation(data.decode())
        elif topic == "refresh":
            if self.leadership.is_leader():
                self.snapshot.request_refresh(*json.loads(data))
        elif topic == "deliveries":
            wires = _DELIVERIES.validate_json(data)
            self.hub.deliver_here(Delivery(w.username, w.notification, w.unread) for w in wires)
        elif topic == "sessions":
            username, _, session_json = data.decode().partition("\n")
            self.hub.push_session_here(username, session_json)

    async def _on_generation(self, text: str) -> None:
        if text.startswith("error:"):
            _, code, message = text.split(":", 2)
            if not self.leadership.is_leader():
                self.snapshot.leader_failed(message, code or None)
            return
        if self.leadership.is_leader():
            return  # our own announcement
        generation = int(text)
        if generation > self._announced:
            self._announced, self._announced_at = generation, time.monotonic()
        if generation <= self.snapshot.health().generation and self._has_snapshot():
            return
        payload = await self.bus.get_snapshot(generation) or await self.bus.get_snapshot()
        if payload is not None:
            await self._install(payload)

    def behind(self) -> float | None:
        """Seconds this follower has lacked a snapshot the leader announced (``None``:
        it keeps up). A replica that stops hearing or installing them is unready."""
        if self.leadership.is_leader() or self._announced <= self.snapshot.health().generation:
            return None
        late = time.monotonic() - self._announced_at
        return late if late > LAG_LIMIT_SECONDS else None

    def _has_snapshot(self) -> bool:
        return self.snapshot.health().taken_at is not None

    async def _install_latest(self) -> None:
        if self.leadership.is_leader():
            return
        payload = await self.bus.get_snapshot()
        if payload is not None:
            await self._install(payload)

    async def _install(self, payload: bytes) -> None:
        snap = await run_in_threadpool(decode_snapshot, payload)
        if self.snapshot.install(snap):
            INSTALLED.inc()

    async def snapshot_at(self, generation: int) -> ClusterSnapshot | None:
        """Generation ``generation`` while Redis keeps it (resuming sockets)."""
        payload = await self.bus.get_snapshot(generation)
        if payload is None:
            return None
        return await run_in_threadpool(decode_snapshot, payload)

    # --- what crosses replicas -------------------------------------------------------------

    def forward_refresh(self, job_ids: list[str]) -> None:
        self._send("refresh", json.dumps(job_ids).encode())

    def deliveries(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        wires = [DeliveryWire(username=d.username, notification=d.notification,
                              unread=d.unread) for d in deliveries]  # fmt: skip
        self._send("deliveries", _DELIVERIES.dump_json(wires), fallback=deliveries)

    def session(self, username: str, session_json: str) -> None:
        self._send("sessions", f"{username}\n{session_json}".encode())

    def leader_failed(self, message: str, code: str | None) -> None:
        self._send("snapshots", f"error:{code or ''}:{message}".encode())

    def _send(self, topic: Topic, payload: bytes, fallback: list[Delivery] | None = None) -> None:
        """Publish from any thread; if Redis fails, this replica's own sockets still
        get a delivery (the inbox holds it for everyone else)."""

        async def send() -> None:
            try:
                await self.bus.publish(topic, payload)
            except BusError as exc:
                log.warning("cannot publish on %s: %s", topic, exc)
                if fallback:
                    self.hub.deliver_here(fallback)

        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(send())
        else:
            asyncio.run_coroutine_threadsafe(send(), loop)
            return
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
