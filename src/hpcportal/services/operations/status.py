"""The cluster at a glance (``hpcportal cluster status``): leader, replicas, database,
Redis, migrations, snapshot age.

Run on a portal server: the database and Redis are reached with *this* server's
settings (``HPCPORTAL_DATABASE_URL``, ``HPCPORTAL_REDIS_URL``: the credentials the
replicas use), at each host ``cluster_config.yaml`` names. Every part is read on its
own and reports its own failure, so one unreachable piece never hides the rest.

- Leader: the lease row (``ha/lease.py``): holder, fencing token, age, time left.
- Migrations: Alembic's current revision of the configured database against the head
  the installed code knows.
- Database roles: PostgreSQL ``pg_is_in_recovery()`` on each host (primary or
  standby); Galera ``wsrep_local_state_comment`` and cluster size on each node.
- Redis roles: ``ROLE`` on each Redis host; each Sentinel's current master.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from hpcportal.config import Settings
from hpcportal.db.session import normalise_url
from hpcportal.ha import redis_probe
from hpcportal.services.operations.cluster_config import (
    ClusterConfig,
    Endpoint,
    GaleraDatabase,
    PostgresDatabase,
    SentinelRedis,
    StandaloneRedis,
)
from hpcportal.services.operations.discover import ReplicaProbe, discover

#: Seconds to wait for any one database or Redis host.
CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class Part:
    """One line of the report: a name, what it is (role, state), or why it is unknown."""

    name: str
    value: str
    ok: bool = True


@dataclass(frozen=True)
class LeaderView:
    holder: str
    server: str | None
    token: int
    age_seconds: float
    expires_in_seconds: float


@dataclass
class ClusterStatus:
    replicas: list[ReplicaProbe]
    leader: LeaderView | None = None
    leader_note: str = ""
    migration: Part = Part("migration", "unknown", ok=False)
    database: list[Part] = field(default_factory=list)
    redis: list[Part] = field(default_factory=list)

    @property
    def snapshot_age_seconds(self) -> float | None:
        """The freshest snapshot any ready replica serves."""
        ages = [r.snapshot_age_seconds for r in self.replicas if r.snapshot_age_seconds is not None]
        return min(ages) if ages else None


def cluster_status(
    config: ClusterConfig, settings: Settings, timeout: float = 2.0
) -> ClusterStatus:
    """Everything ``cluster status`` shows; never raises for an unreachable part."""
    status = ClusterStatus(replicas=discover(config, timeout))
    engine = create_engine(normalise_url(settings.database_url), **_connect_args(settings))
    try:
        status.migration = _guarded("migration", lambda: _migration(engine))
        _read_leader(status, engine, config)
    finally:
        engine.dispose()
    status.database = _database_roles(config, settings)
    status.redis = _redis_roles(config, settings)
    return status


def _guarded(name: str, read: Callable[[], Part]) -> Part:
    try:
        return read()
    except Exception as exc:  # any driver's failure: shown as this part's state
        return Part(name, _reason(exc), ok=False)


def _reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"unreachable: {type(exc).__name__}{': ' + first if first else ''}"


def _connect_args(settings: Settings) -> dict[str, Any]:
    backend = normalise_url(settings.database_url).get_backend_name()
    if backend in ("postgresql", "mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {}


def _migration(engine: Engine) -> Part:
    from hpcportal.db.migrate import current_revision, head_revision

    current, head = current_revision(engine), head_revision()
    if current == head:
        return Part("migration", f"at head ({head})")
    return Part("migration", f"database at {current or 'no revision'}, code head {head}", False)


def _read_leader(status: ClusterStatus, engine: Engine, config: ClusterConfig) -> None:
    from sqlalchemy.orm import Session

    from hpcportal.ha import lease

    try:
        with Session(engine) as session:
            state = lease.read(session)
    except Exception as exc:  # no lease table yet, database down: say so
        status.leader_note = f"lease not readable: {_reason(exc)}"
        return
    if state is None:
        status.leader_note = "no lease taken yet (one server alone, or none started)"
        return
    now = lease.now_ms()
    status.leader = LeaderView(
        holder=state.holder,
        server=_server_of(state.holder, config),
        token=state.token,
        age_seconds=(now - state.acquired_at_ms) / 1000,
        expires_in_seconds=(state.expires_at_ms - now) / 1000,
    )
    if state.expired(now):
        status.leader_note = "the lease has expired: no replica leads right now"


def _server_of(holder: str, config: ClusterConfig) -> str | None:
    """The configured server a lease holder (``replica_id``, default host:port) names."""
    for server in config.servers:
        if holder in (
            server.name,
            f"{server.name}:{server.port}",
            f"{server.address}:{server.port}",
        ):
            return server.name
    host, _, port = holder.rpartition(":")
    matches = [s.name for s in config.servers if str(s.port) == port and host]
    return matches[0] if len(matches) == 1 else None


def _database_roles(config: ClusterConfig, settings: Settings) -> list[Part]:
    database = config.database
    if not isinstance(database, PostgresDatabase | GaleraDatabase):
        return [Part("sqlite", f"one file, {database.path}")]
    url = normalise_url(settings.database_url)
    wanted = "postgresql" if isinstance(database, PostgresDatabase) else "mysql"
    if url.get_backend_name() not in (wanted, "mariadb" if wanted == "mysql" else wanted):
        note = f"not checked: this server's database_url is {url.get_backend_name()}"
        return [Part(host.name, note, ok=False) for host in database.hosts()]
    parts = []
    for host in database.hosts():
        at = url.set(host=str(host.address), port=host.port)
        if isinstance(database, PostgresDatabase):
            parts.append(_guarded(host.name, partial(_pg_role, at, host.name)))
        else:
            parts.append(_guarded(host.name, partial(_galera, at, host.name)))
    return parts


def _one_query(url: URL, sql: str) -> list[Any]:
    engine = create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)).all())
    finally:
        engine.dispose()


def _pg_role(url: URL, name: str) -> Part:
    (row,) = _one_query(url, "SELECT pg_is_in_recovery()")
    return Part(name, "standby" if row[0] else "primary")


def _galera(url: URL, name: str) -> Part:
    rows = dict(_one_query(url, "SHOW GLOBAL STATUS LIKE 'wsrep_%'"))
    state = rows.get("wsrep_local_state_comment")
    if state is None:
        return Part(name, "not a Galera node (no wsrep status)", ok=False)
    return Part(name, f"{state}, cluster size {rows.get('wsrep_cluster_size')}", state == "Synced")


def _redis_roles(config: ClusterConfig, settings: Settings) -> list[Part]:
    redis_config = config.redis
    if redis_config is None:
        return []
    password = _redis_password(settings)
    hosts: list[Endpoint] = (
        [redis_config.server]
        if isinstance(redis_config, StandaloneRedis)
        else [redis_config.master, *redis_config.replicas]
    )
    parts = [_guarded(h.name, partial(_redis_role, h, password)) for h in hosts]
    if isinstance(redis_config, SentinelRedis):
        for sentinel in redis_config.sentinels:
            read = partial(_sentinel_master, sentinel, redis_config.master_name)
            parts.append(_guarded(f"{sentinel.name} (sentinel)", read))
    return parts


def _redis_password(settings: Settings) -> str | None:
    if not settings.redis_url:
        return None
    password = urlsplit(settings.redis_url).password
    return unquote(password) if password else None


def _redis_role(host: Endpoint, password: str | None) -> Part:
    found = redis_probe.role(str(host.address), host.port, password, CONNECT_TIMEOUT)
    if found.kind == "slave":
        return Part(
            host.name,
            f"replica of {found.master} ({'connected' if found.link_up else 'link down'})",
            found.link_up,
        )
    if found.kind == "master":
        return Part(host.name, f"master, {found.replicas} replica(s)")
    return Part(host.name, found.kind)


def _sentinel_master(sentinel: Endpoint, master_name: str) -> Part:
    label = f"{sentinel.name} (sentinel)"
    found = redis_probe.sentinel_master(
        str(sentinel.address), sentinel.port, master_name, CONNECT_TIMEOUT
    )
    if found is None:
        return Part(label, f"does not monitor {master_name!r}", ok=False)
    return Part(label, f"master {master_name} at {found[0]}:{found[1]}")
