"""Resuming a live socket from the generation it last saw, on any replica.

Snapshot generations are one sequence across replicas (the leader numbers them and
followers keep its numbers, ``SnapshotService.install``), so a client that reconnects,
to the same replica or another, sends ``{"type": "resume", "generation": n}`` after
subscribing. The hub finds snapshot ``n`` (its own recent ones, else the replicas'
shared history in Redis) and sends that socket the differences from ``n`` to its
current snapshot as ordinary ``jobs`` / ``nodes`` / ``cluster`` messages: the client
then holds what it would have held had it never been away. When ``n`` is too old to be
found, it sends ``{"type": "resync", "generation": current}`` and the client reloads
its lists once (what old clients did after every reconnect). Old clients that never
send ``resume`` work as before.
"""

from __future__ import annotations

from hpcportal.services.changes import compute_changes
from hpcportal.services.live.connection import Connection
from hpcportal.services.live.fanout import HubBase, log
from hpcportal.services.live.protocol import make_message


class Resumption(HubBase):
    """``resume``: catch one socket up from a generation it names."""

    def resume(self, conn: Connection, generation: object) -> None:
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            self.bad_message(conn, '"generation" is the last generation this client saw.')
            return
        self._spawn(self._resume(conn, generation))

    def bad_message(self, conn: Connection, text: str) -> None:
        raise NotImplementedError  # LiveHub's

    async def _resume(self, conn: Connection, since: int) -> None:
        current = self._current
        if current is None or since >= current.generation:
            return  # nothing newer here yet: the next refresh brings what follows
        old = self._history.get(since)
        if old is None and self.history_source is not None:
            try:
                old = await self.history_source(since)
            except Exception as exc:  # Redis failed: a full reload is always correct
                log.info("cannot read generation %d to resume a socket: %s", since, exc)
        current = self._current  # what the socket is sent from here on
        if conn.closed or current is None:
            return
        if old is None:
            self._push(conn, make_message("resync", generation=current.generation), "resync")
            return
        self.publish(compute_changes(old, current), current, old, only=[conn])
