"""The one client of Redis: the replicas' shared bus (nothing else talks to Redis).

Redis carries what replicas must see of each other but need not keep: the leader's
latest snapshot (``snapshot:latest``, read by a replica at start), each snapshot by
generation for a few minutes (``snapshot:<n>``, so a live socket that reconnects to
another replica can resume from the generation it last saw), and four pub/sub topics:
``snapshots`` (a new generation), ``refresh`` (a follower asks the leader to read jobs
again after an action), ``deliveries`` (notifications to push to their owners'
sockets) and ``sessions`` (an interactive session changed). Losing Redis loses no data:
the database holds everything durable; replicas then serve their last snapshot
(marked stale) until Redis answers again.

Redis is standalone (``redis_url``) or found through Sentinel (``redis_sentinels`` and
``redis_sentinel_master``); every key and topic starts with ``redis_prefix`` so that
several portals (or tests) can share one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Topic = Literal["snapshots", "refresh", "deliveries", "sessions"]
TOPICS: tuple[Topic, ...] = ("snapshots", "refresh", "deliveries", "sessions")

#: How long each generation's snapshot stays readable for resuming sockets.
HISTORY_SECONDS = 300
#: Seconds before one Redis command counts as failed.
COMMAND_TIMEOUT = 2.0


class BusError(RuntimeError):
    """Redis did not answer (or answered with an error)."""


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Sentinel address is host:port, not {address!r}")
    return host.strip("[]"), int(port)


class RedisBus:
    """Typed operations on Redis; every failure becomes ``BusError``."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self.prefix = prefix

    @classmethod
    def connect(
        cls,
        url: str | None,
        *,
        sentinels: Sequence[str] = (),
        master: str = "mymaster",
        prefix: str = "hpcportal:",
    ) -> RedisBus:
        """A client for ``url``, or for Sentinel's current master when ``sentinels``."""
        options: dict[str, Any] = {
            "socket_timeout": COMMAND_TIMEOUT,
            "socket_connect_timeout": COMMAND_TIMEOUT,
            "health_check_interval": 10,
        }
        if sentinels:
            addresses = [_host_port(s) for s in sentinels]
            sentinel = Sentinel(addresses, **options)  # type: ignore[no-untyped-call]
            client: Redis = sentinel.master_for(master, **options)
        elif url:
            client = Redis.from_url(url, **options)
        else:
            raise ValueError("Redis needs redis_url or redis_sentinels")
        return cls(client, prefix)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    # --- snapshots -------------------------------------------------------------------

    async def put_snapshot(self, generation: int, payload: bytes) -> None:
        """Store ``payload`` as the latest and as generation ``generation``, then tell."""
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.key("snapshot:latest"), payload)
                pipe.set(self.key(f"snapshot:{generation}"), payload, ex=HISTORY_SECONDS)
                pipe.publish(self.key("snapshots"), str(generation).encode())
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusError(f"Redis: {exc}") from exc

    async def get_snapshot(self, generation: int | None = None) -> bytes | None:
        """The latest snapshot (``None``), or one generation's while it is kept."""
        name = "snapshot:latest" if generation is None else f"snapshot:{generation}"
        try:
            value = await self._client.get(self.key(name))
        except (RedisError, OSError) as exc:
            raise BusError(f"Redis: {exc}") from exc
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    # --- topics ----------------------------------------------------------------------

    async def publish(self, topic: Topic, payload: bytes) -> None:
        try:
            await self._client.publish(self.key(topic), payload)
        except (RedisError, OSError) as exc:
            raise BusError(f"Redis: {exc}") from exc

    async def listen(self, topics: Sequence[Topic] = TOPICS) -> AsyncIterator[tuple[Topic, bytes]]:
        """Messages on ``topics`` until Redis fails (``BusError``) or the caller stops."""
        names = {self.key(t): t for t in topics}
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*names)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                channel = message.get("channel")
                if isinstance(channel, bytes):
                    channel = channel.decode()
                topic = names.get(str(channel))
                data = message.get("data")
                if topic is not None and isinstance(data, bytes):
                    yield topic, data
        except (RedisError, OSError) as exc:
            raise BusError(f"Redis: {exc}") from exc
        finally:
            with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
