"""The typed schema of ``cluster_config.yaml``: one file describes every server of a site.

Why one file: the portal servers, the two HAProxy front ends, the database, Redis, the
Slurm controllers and the backups must agree with each other (an address in HAProxy's
backend is a server's ``listen`` address, a Sentinel's quorum depends on how many
Sentinels there are). ``hpcportal cluster render`` derives every tool's configuration
from it, so they cannot drift apart. Structure is checked by pydantic (strict: unknown
keys are refused, so a misspelt key is an error rather than a silent default); what
pydantic cannot see (duplicates, a virtual IP outside every front end's network, a
quorum above the number of Sentinels) is checked in the ``model_validator``s below,
each raising with the location it concerns so ``config_errors`` can point to the line.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: A host name as DNS and Slurm accept it (no spaces, no shell characters).
HostName = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be between 1 and 65535")
    return value


Port = Annotated[int, AfterValidator(_port)]


def _safe_path(value: PurePosixPath) -> PurePosixPath:
    """A path that goes into other tools' files as is: absolute, one plain token."""
    if not value.is_absolute():
        raise ValueError(f"{str(value)!r} must be an absolute path (starting with /)")
    if any(ch.isspace() or ord(ch) < 32 or ch in "\"'\\#;$`" for ch in str(value)):
        raise ValueError(
            f"{str(value)!r}: no spaces, quotes, '#', ';', '$' or control characters in a path"
        )
    return value


SafePath = Annotated[PurePosixPath, AfterValidator(_safe_path)]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Count = Annotated[int, Field(ge=0, le=10_000)]


class SemanticError(ValueError):
    """A check across fields failed; ``loc`` says where in the file it belongs."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt ``quorom`` must not silently become a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(Strict):
    """A named host and the port one service of it listens on."""

    name: HostName
    address: Address
    port: Port


class PortalServer(Endpoint):
    """One ``hpcportal serve`` replica."""

    port: Port = 8080


class PortalRuntime(Strict):
    """How every replica's systemd unit runs ``hpcportal serve``."""

    user: str = Field(default="hpcportal", min_length=1, pattern=r"^[a-z_][a-z0-9_-]*$")
    executable: SafePath = PurePosixPath("/opt/hpcportal/bin/hpcportal")
    environment_file: SafePath = PurePosixPath("/etc/hpcportal/portal.env")
    working_directory: SafePath = PurePosixPath("/var/lib/hpcportal")


class FrontEndHost(Strict):
    """One HAProxy + Keepalived machine; ``address`` carries its network (``10.0.0.2/24``)."""

    name: HostName
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    priority: int = Field(default=100, ge=1, le=254)


class FrontEnd(Strict):
    """Two HAProxy hosts sharing a Keepalived virtual IP (VRRP)."""

    hosts: list[FrontEndHost] = Field(min_length=1, max_length=2)
    virtual_ip: Address
    interface: str = Field(min_length=1, max_length=15, pattern=r"^[A-Za-z0-9_.:-]+$")
    virtual_router_id: int = Field(ge=1, le=255)
    bind_address: Address | None = None
    port: Port = 80
    #: Seconds a WebSocket may stay idle before HAProxy closes it (``timeout tunnel``).
    tunnel_timeout: int = Field(default=3600, ge=10, le=86400)
    retries: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="after")
    def _vip_in_a_network(self) -> FrontEnd:
        if self.interface == "lo":
            raise SemanticError(
                ("interface",),
                "Keepalived cannot use the loopback interface for VRRP; name the interface "
                "the front ends share a network on",
            )
        if not any(self.virtual_ip in host.address.network for host in self.hosts):
            networks = ", ".join(str(host.address.network) for host in self.hosts)
            raise SemanticError(
                ("virtual_ip",),
                f"{self.virtual_ip} is in no front end's network ({networks}); "
                "Keepalived can only move an address within the hosts' network",
            )
        names = [host.name for host in self.hosts]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise SemanticError(("hosts", index, "name"), f"duplicate front end {name!r}")
        if len(self.hosts) == 2 and self.hosts[0].priority == self.hosts[1].priority:
            raise SemanticError(
                ("hosts", 1, "priority"),
                "the two front ends need different priorities (the higher one holds the VIP)",
            )
        return self


class DatabaseHost(Endpoint):
    port: Port = 5432


class PostgresDatabase(Strict):
    """A primary with streaming-replication standbys."""

    engine: Literal["postgresql"]
    primary: DatabaseHost
    standbys: list[DatabaseHost] = Field(default_factory=list, max_length=16)
    name: str = Field(default="hpcportal", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63)
    user: str = Field(default="hpcportal", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63)
    replication_user: str = Field(
        default="replicator", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63
    )
    #: Where a standby's libpq finds the replication password (``.pgpass`` format).
    replication_passfile: SafePath = PurePosixPath("/var/lib/postgresql/.pgpass")

    def hosts(self) -> list[DatabaseHost]:
        return [self.primary, *self.standbys]

    @model_validator(mode="after")
    def _distinct(self) -> PostgresDatabase:
        names = [host.name for host in self.hosts()]
        for index, name in enumerate(names[1:]):
            if name in names[: index + 1]:
                raise SemanticError(
                    ("standbys", index, "name"), f"duplicate database host {name!r}"
                )
        return self


class GaleraNode(Endpoint):
    port: Port = 3306


class GaleraDatabase(Strict):
    """A MariaDB Galera cluster (every node writable; three or more for a quorum)."""

    engine: Literal["galera"]
    nodes: list[GaleraNode] = Field(min_length=1, max_length=16)
    cluster_name: str = Field(default="hpcportal", pattern=r"^[A-Za-z0-9_-]+$", max_length=32)
    name: str = Field(default="hpcportal", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    user: str = Field(default="hpcportal", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=32)

    def hosts(self) -> list[GaleraNode]:
        return list(self.nodes)

    @model_validator(mode="after")
    def _odd_quorum(self) -> GaleraDatabase:
        if len(self.nodes) == 2:
            raise SemanticError(
                ("nodes",),
                "a Galera cluster of two nodes loses its quorum with either; use one or three+",
            )
        return self


class SqliteDatabase(Strict):
    """One file on one server: the single-server default."""

    engine: Literal["sqlite"]
    path: SafePath = PurePosixPath("/var/lib/hpcportal/portal.db")


Database = Annotated[
    PostgresDatabase | GaleraDatabase | SqliteDatabase, Field(discriminator="engine")
]


class RedisHost(Endpoint):
    port: Port = 6379


class SentinelHost(Endpoint):
    port: Port = 26379


class StandaloneRedis(Strict):
    mode: Literal["standalone"]
    server: RedisHost
    data_directory: SafePath = PurePosixPath("/var/lib/redis")


class SentinelRedis(Strict):
    """A Redis master, its replicas, and the Sentinels that fail over between them."""

    mode: Literal["sentinel"]
    master_name: str = Field(default="hpcportal", pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    master: RedisHost
    replicas: list[RedisHost] = Field(default_factory=list, max_length=16)
    sentinels: list[SentinelHost] = Field(min_length=1, max_length=16)
    quorum: int = Field(ge=1)
    down_after_ms: int = Field(default=5000, ge=100, le=600_000)
    failover_timeout_ms: int = Field(default=60_000, ge=1000, le=3_600_000)
    data_directory: SafePath = PurePosixPath("/var/lib/redis")

    @model_validator(mode="after")
    def _quorum(self) -> SentinelRedis:
        if self.quorum > len(self.sentinels):
            raise SemanticError(
                ("quorum",),
                f"quorum {self.quorum} is greater than the number of sentinels "
                f"({len(self.sentinels)}): no failover could ever be agreed",
            )
        names = [host.name for host in [self.master, *self.replicas]]
        for index, name in enumerate(names[1:]):
            if name in names[: index + 1]:
                raise SemanticError(("replicas", index, "name"), f"duplicate Redis host {name!r}")
        return self


Redis = Annotated[StandaloneRedis | SentinelRedis, Field(discriminator="mode")]


class SlurmController(Strict):
    name: HostName
    address: Address | None = None


class Slurm(Strict):
    """Slurm's own HA: a primary ``SlurmctldHost``, backups, one shared state directory."""

    controllers: list[SlurmController] = Field(min_length=1, max_length=10)
    state_save_location: SafePath
    slurmctld_timeout: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _distinct(self) -> Slurm:
        names = [controller.name for controller in self.controllers]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise SemanticError(
                    ("controllers", index, "name"), f"duplicate controller {name!r}"
                )
        return self


class Retention(Strict):
    """How many daily, weekly and monthly copies to keep (grandfather-father-son)."""

    daily: int = Field(default=7)
    weekly: int = Field(default=4)
    monthly: int = Field(default=12)

    @model_validator(mode="after")
    def _not_negative(self) -> Retention:
        for field in ("daily", "weekly", "monthly"):
            value = getattr(self, field)
            if value < 0:
                raise SemanticError((field,), f"cannot keep {value} copies; 0 or more")
        if self.daily + self.weekly + self.monthly == 0:
            raise SemanticError(("daily",), "keeps no copy at all; set at least one count")
        return self


class Backup(Strict):
    directory: SafePath = PurePosixPath("/var/backups/hpcportal")
    keep: Retention = Retention()


class Secrets(Strict):
    """Files holding secrets shared by replicas; the files are read at start, never printed."""

    jwt_secret_file: SafePath = PurePosixPath("/etc/hpcportal/secrets/jwt_secret")
    secret_key_file: SafePath = PurePosixPath("/etc/hpcportal/secrets/portal.key")
    database_password_file: SafePath | None = None
    redis_password_file: SafePath | None = None


class ClusterConfig(Strict):
    """The whole ``cluster_config.yaml``."""

    servers: list[PortalServer] = Field(min_length=1, max_length=64)
    portal: PortalRuntime = PortalRuntime()
    front_end: FrontEnd | None = None
    database: Database
    redis: Redis | None = None
    slurm: Slurm | None = None
    backup: Backup = Backup()
    secrets: Secrets = Secrets()

    @model_validator(mode="after")
    def _across(self) -> ClusterConfig:
        seen_names: dict[str, int] = {}
        seen_addresses: dict[tuple[str, int], int] = {}
        for index, server in enumerate(self.servers):
            if server.name in seen_names:
                raise SemanticError(
                    ("servers", index, "name"),
                    f"duplicate server name {server.name!r} "
                    f"(also servers[{seen_names[server.name]}])",
                )
            seen_names[server.name] = index
            key = (str(server.address), server.port)
            if key in seen_addresses:
                raise SemanticError(
                    ("servers", index, "port"),
                    f"{server.address}:{server.port} is also servers[{seen_addresses[key]}]'s "
                    "address: two replicas cannot listen on one port",
                )
            seen_addresses[key] = index
        if isinstance(self.database, SqliteDatabase) and len(self.servers) > 1:
            raise SemanticError(
                ("database", "engine"),
                f"sqlite serves one server only, and {len(self.servers)} are configured; "
                "use postgresql or galera",
            )
        if len(self.servers) > 1 and self.redis is None:
            raise SemanticError(
                ("servers",),
                "several servers share sessions and the leader's snapshot through Redis: "
                "add a redis section",
            )
        return self

    def server(self, name: str) -> PortalServer | None:
        return next((server for server in self.servers if server.name == name), None)


__all__ = [
    "Backup",
    "ClusterConfig",
    "FrontEnd",
    "GaleraDatabase",
    "PortalServer",
    "PostgresDatabase",
    "Retention",
    "SemanticError",
    "SentinelRedis",
    "Slurm",
    "SqliteDatabase",
    "StandaloneRedis",
]
