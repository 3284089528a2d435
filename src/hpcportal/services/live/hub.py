"""``LiveHub``: the hub as the app uses it (lifecycle, sockets, notifications,
interactive sessions), made of the fan-out, output following and revocation sweep."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hpcportal.services.live.connection import Connection, LiveIdentity, LiveSocket
from hpcportal.services.live.output_follow import OutputFollowing
from hpcportal.services.live.protocol import (
    CHANNELS,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TIMEOUT,
    LIVE_SOCKETS,
    MAX_BAD_MESSAGES,
    MAX_CHANNELS_PER_MESSAGE,
    MAX_MESSAGE_CHARS,
    OUTPUT_PREFIX,
    PONG,
    TOO_MANY_BAD,
    error_message,
    make_message,
)
from hpcportal.services.live.resume import Resumption
from hpcportal.services.live.revocation import RevocationSweep
from hpcportal.services.live.scheduler import LatestOnly
from hpcportal.services.notifications import Delivery
from hpcportal.services.snapshot import ClusterSnapshot

log = logging.getLogger(__package__)  # one logger name for the whole package


class LiveHub(OutputFollowing, RevocationSweep, Resumption):
    """All live sockets of one portal process, fed after each snapshot refresh."""

    def workers(self) -> list[LatestOnly]:
        return [
            LatestOnly("notifications", self._notify, leader_only=True),
            LatestOnly("sessions", self._check_sessions),
            LatestOnly("interactive", self._track_interactive, leader_only=True),
        ]

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

    # --- registering ----------------------------------------------------------------------

    def register(self, socket: LiveSocket, identity: LiveIdentity) -> Connection:
        conn = Connection(socket, identity, self.settings.live_queue_messages)
        self._connections.add(conn)
        self._by_user.setdefault(conn.user, set()).add(conn)
        LIVE_SOCKETS.inc()
        return conn

    # --- one socket -------------------------------------------------------------------------

    async def serve(self, socket: LiveSocket, identity: LiveIdentity) -> None:
        """Accept, greet, then read client messages until the socket closes."""
        await socket.accept()
        conn = self.register(socket, identity)
        generation = self.snapshot.health().generation
        conn.queue.put_nowait(make_message("hello", user=conn.user, generation=generation))
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
        if kind == "resume":
            self.resume(conn, message.get("generation"))
            return
        if kind not in ("subscribe", "unsubscribe"):
            self.bad_message(
                conn,
                f"Unknown message type {kind!r}: use subscribe, unsubscribe, resume or ping.",
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

    # --- notifications -----------------------------------------------------------------------

    async def _notify(self, snap: ClusterSnapshot) -> None:
        if self.detector is None:
            return
        deliveries = await run_in_threadpool(self.detector.process, snap)
        self.deliver(deliveries)

    def deliver(self, deliveries: Iterable[Delivery]) -> None:
        """Push stored notifications to their owner's sockets on ``notifications``, on
        every replica (through ``relay`` when there are several)."""
        if self.relay is not None:
            self.relay.deliveries(list(deliveries))
            return
        self.deliver_here(deliveries)

    def deliver_here(self, deliveries: Iterable[Delivery]) -> None:
        """Push to this process's sockets only (the relay calls it on each replica)."""
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
        the API right after a launch, delete or share, so other tabs hear at once), on
        every replica."""
        if self.relay is not None:
            self.relay.session(username, session.model_dump_json())
            return
        self.push_session_here(username, session.model_dump_json())

    def push_session_here(self, username: str, session_json: str) -> None:
        """Tell this process's sockets only (the relay calls it on each replica)."""
        members = [c for c in self._by_user.get(username, ()) if "sessions" in c.channels]
        if members:
            text = f'{{"type":"session","session":{session_json}}}'
            self._send_all(members, text, "session")
