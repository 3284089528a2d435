"""One synchronous look at Redis, for ``hpcportal check``: does it answer, and which?

The replicas' bus (``redis_bus``) is asynchronous and keeps its connection; a check
run from the command line wants one short, blocking question instead. It stays in
``ha/`` so that this package remains the portal's only client of Redis: the same
settings (``redis_url``, or ``redis_sentinels`` and ``redis_sentinel_master``) reach
the same server the replicas use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

from hpcportal.ha.redis_bus import BusError


@dataclass(frozen=True)
class RedisAnswer:
    """The server that answered (Sentinel's master: its address) and its release."""

    version: str
    host: str | None = None
    port: int | None = None


def _host_port(address: str) -> tuple[str, int]:
    """``host:port`` of a Sentinel; Sentinel's own port when none is given."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or address, int(port or 26379)


def probe(
    url: str | None,
    *,
    sentinels: Sequence[str] = (),
    master: str = "mymaster",
    timeout: float = 3.0,
) -> RedisAnswer:
    """PING Redis at ``url``, or Sentinel's current ``master`` (with ``url``'s password)
    when ``sentinels`` are given, and read its version; each step waits ``timeout``.

    Raises ``BusError`` (the client's message) when it does not answer, and
    ``ValueError`` when neither is configured.
    """
    try:
        if sentinels:
            password = urlsplit(url).password if url else None
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [_host_port(item) for item in sentinels], socket_timeout=timeout
            )
            host, port = sentinel.discover_master(master)  # type: ignore[no-untyped-call]
            client = redis.Redis(
                host=host,
                port=port,
                password=password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            found: tuple[str | None, int | None] = (str(host), int(port))
        elif url:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            found = (None, None)
        else:
            raise ValueError("Redis needs redis_url or redis_sentinels")
        with client:
            client.ping()
            version = client.info("server").get("redis_version", "?")
    except (RedisError, OSError) as exc:
        raise BusError(str(exc) or type(exc).__name__) from exc
    return RedisAnswer(version=str(version), host=found[0], port=found[1])


@dataclass(frozen=True)
class RedisRole:
    """What ``ROLE`` says of one server: master (with its replica count) or replica."""

    kind: str  # "master", "slave" (Redis's word for a replica), "sentinel"
    replicas: int = 0
    master: str | None = None  # a replica's master, host:port
    link_up: bool = False  # a replica's link to its master


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def role(host: str, port: int, password: str | None, timeout: float) -> RedisRole:
    """Ask one Redis server (not through Sentinel) which role it plays now.

    Raises ``RedisError``/``OSError`` when it does not answer: the caller reports it."""
    with redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    ) as client:
        answer = client.execute_command("ROLE")
    kind = _text(answer[0])
    if kind == "slave":
        master = f"{_text(answer[1])}:{answer[2]}"
        return RedisRole(kind, master=master, link_up=_text(answer[3]) == "connected")
    if kind == "master":
        return RedisRole(kind, replicas=len(answer[2]))
    return RedisRole(kind)


def sentinel_master(host: str, port: int, name: str, timeout: float) -> tuple[str, int] | None:
    """The master a Sentinel names for ``name`` now, or None when it does not watch it."""
    with redis.Redis(
        host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout
    ) as client:
        address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
    if not address:
        return None
    return _text(address[0]), int(_text(address[1]))
