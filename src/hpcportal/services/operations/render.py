"""Every tool's configuration, derived from one ``ClusterConfig`` (``hpcportal cluster render``).

One function per tool returns the text of one file; ``render_all`` names the files. The
templates are Jinja2 package data (``templates/*.j2``) rendered with ``StrictUndefined``,
so a value the template expects and the renderer forgot is an error, not an empty line.
Nothing secret is rendered: passwords stay in the files ``secrets`` names (a Redis
``include``, PostgreSQL's passfile), and ``steps`` says how to put them in place.

Every value reaching a template is typed by the schema (addresses, host names, paths
without spaces or control characters), so a value cannot add a line to a file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from hpcportal.services.operations.cluster_config import (
    ClusterConfig,
    Endpoint,
    FrontEnd,
    GaleraDatabase,
    PostgresDatabase,
    SentinelRedis,
    Slurm,
    StandaloneRedis,
)

#: Where a Redis host's ``requirepass``/``masterauth`` lines go (readable by redis only).
REDIS_AUTH_INCLUDE = "/etc/redis/hpcportal-auth.conf"
#: Alertmanager's copy of the portal receiver's bearer token (alertmanager_token_file).
ALERTMANAGER_TOKEN_FILE = "/etc/prometheus/hpcportal-alertmanager.token"  # noqa: S105 (a path)
#: The portal's Alertmanager receiver (api/alert_receiver.py).
ALERT_RECEIVER_PATH = "/api/v1/alerts/alertmanager"


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("hpcportal.services.operations", "templates"),
        undefined=StrictUndefined,
        # Configuration files, not HTML: escaping would corrupt them. The values are typed
        # by the schema (addresses, host names, plain paths), so none can add a line.
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)


def _host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as it goes before ``:port`` (IPv6 in brackets)."""
    return f"[{address}]" if address.version == 6 else str(address)


def _cidr(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{address}/{address.max_prefixlen}"


def render_haproxy(config: ClusterConfig) -> str:
    """``haproxy.cfg``: the replicas checked on ``/ready``, safe retries, WebSockets."""
    front_end = config.front_end
    port = front_end.port if front_end else 80
    bind_address = front_end.bind_address if front_end else None
    bind = f"{_host(bind_address)}:{port}" if bind_address else f":{port}"
    servers = [
        {"name": server.name, "host": _host(server.address), "port": server.port}
        for server in config.servers
    ]
    return _render(
        "haproxy.cfg.j2",
        bind=bind,
        servers=servers,
        front_end_tunnel=front_end.tunnel_timeout if front_end else 3600,
        retries=front_end.retries if front_end else 3,
    )


def render_keepalived(front_end: FrontEnd, host_name: str) -> str:
    """``keepalived.conf`` of one front end: the higher priority starts as MASTER."""
    host = next(host for host in front_end.hosts if host.name == host_name)
    highest = max(other.priority for other in front_end.hosts)
    network = next(
        (h.address.network for h in front_end.hosts if front_end.virtual_ip in h.address.network),
        host.address.network,
    )
    return _render(
        "keepalived.conf.j2",
        host=host,
        state="MASTER" if host.priority == highest else "BACKUP",
        interface=front_end.interface,
        virtual_router_id=front_end.virtual_router_id,
        virtual_ip=front_end.virtual_ip,
        prefix=network.prefixlen,
    )


def render_redis(
    redis: StandaloneRedis | SentinelRedis, host: Endpoint, *, auth: bool = False
) -> str:
    """``redis.conf`` of one Redis host (a replica of the master under Sentinel)."""
    replica_of = None
    if isinstance(redis, SentinelRedis) and host != redis.master:
        replica_of = redis.master
    return _render(
        "redis.conf.j2",
        host=host,
        role="replica" if replica_of else "master",
        data_directory=redis.data_directory,
        replica_of=replica_of,
        auth_include=REDIS_AUTH_INCLUDE if auth else None,
    )


def render_sentinel(redis: SentinelRedis, host: Endpoint) -> str:
    """``sentinel.conf`` of one Sentinel."""
    return _render(
        "sentinel.conf.j2",
        host=host,
        data_directory=redis.data_directory,
        master_name=redis.master_name,
        master=redis.master,
        quorum=redis.quorum,
        down_after_ms=redis.down_after_ms,
        failover_timeout_ms=redis.failover_timeout_ms,
    )


def render_postgresql(database: PostgresDatabase, host: Endpoint) -> str:
    """The ``postgresql.conf`` include of the primary or of one standby."""
    primary = None if host == database.primary else database.primary
    return _render(
        "postgresql.conf.j2",
        host=host,
        role="standby" if primary else "primary",
        primary=primary,
        replication_user=database.replication_user,
        replication_passfile=database.replication_passfile,
        wal_senders=len(database.standbys) + 5,
    )


def render_pg_hba(config: ClusterConfig, database: PostgresDatabase) -> str:
    """``pg_hba.conf`` lines: every portal server, and replication between database hosts."""
    return _render(
        "pg_hba.conf.j2",
        servers=[{"cidr": _cidr(server.address)} for server in config.servers],
        replication_hosts=[{"cidr": _cidr(host.address)} for host in database.hosts()],
        database=database.name,
        user=database.user,
        replication_user=database.replication_user,
    )


def render_galera(database: GaleraDatabase, node: Endpoint) -> str:
    """The ``[mariadbd]`` ``wsrep_*`` settings of one Galera node."""
    addresses = ",".join(_host(other.address) for other in database.nodes)
    return _render(
        "galera.cnf.j2", node=node, cluster_name=database.cluster_name, addresses=addresses
    )


def render_systemd_unit(config: ClusterConfig, server_name: str) -> str:
    """``hpcportal.service`` of one replica: ``hpcportal serve`` on its address and port."""
    server = config.server(server_name)
    if server is None:
        raise KeyError(server_name)
    return _render(
        "hpcportal.service.j2", server=server, runtime=config.portal, secrets=config.secrets
    )


def render_slurm(slurm: Slurm) -> str:
    """``slurm.conf`` lines: ``SlurmctldHost`` primary then backups, the shared state."""
    return _render(
        "slurm.conf.j2",
        controllers=slurm.controllers,
        state_save_location=slurm.state_save_location,
        slurmctld_timeout=slurm.slurmctld_timeout,
    )


def database_url(config: ClusterConfig) -> str:
    """The URL every replica uses, with no password in it.

    PostgreSQL: every host, and ``target_session_attrs=read-write`` so a replica finds
    the primary after a standby is promoted; the password comes from a libpq passfile
    (``secrets.database_password_file``). Galera: the first node (any node takes
    writes); the password from an option file pymysql reads (``[client]``).
    """
    database = config.database
    if isinstance(database, PostgresDatabase):
        hosts = "&".join(f"host={_host(h.address)}:{h.port}" for h in database.hosts())
        passfile = config.secrets.database_password_file
        extra = f"&passfile={passfile}" if passfile else ""
        return (
            f"postgresql+psycopg://{database.user}@/{database.name}?{hosts}"
            f"&target_session_attrs=read-write{extra}"
        )
    if isinstance(database, GaleraDatabase):
        node = database.nodes[0]
        option_file = config.secrets.database_password_file
        extra = f"&read_default_file={option_file}" if option_file else ""
        return (
            f"mysql+pymysql://{database.user}@{_host(node.address)}:{node.port}/"
            f"{database.name}?charset=utf8mb4{extra}"
        )
    return f"sqlite:///{database.path}"


def render_portal_env(config: ClusterConfig) -> str:
    """``portal.env``: the settings every replica shares (no secret in it)."""
    redis = config.redis
    lines: list[str] = []
    if isinstance(redis, StandaloneRedis):
        url = f"redis://{_host(redis.server.address)}:{redis.server.port}/0"
        if config.secrets.redis_password_file:
            lines.append(f"# With the password of {config.secrets.redis_password_file}:")
            url = f"redis://:<password>@{_host(redis.server.address)}:{redis.server.port}/0"
            lines.append(f"# HPCPORTAL_REDIS_URL={url}")
        else:
            lines.append(f"HPCPORTAL_REDIS_URL={url}")
    elif isinstance(redis, SentinelRedis):
        sentinels = ",".join(f'"{_host(s.address)}:{s.port}"' for s in redis.sentinels)
        lines.append(f"HPCPORTAL_REDIS_SENTINELS=[{sentinels}]")
        lines.append(f"HPCPORTAL_REDIS_SENTINEL_MASTER={redis.master_name}")
    database = config.database
    file_format = None
    if isinstance(database, PostgresDatabase):
        file_format = "a libpq passfile: host:port:database:user:password lines"
    elif isinstance(database, GaleraDatabase):
        file_format = "an option file: [client] then password=..."
    return _render(
        "portal.env.j2",
        runtime=config.portal,
        secrets=config.secrets,
        database_url=database_url(config),
        password_file=config.secrets.database_password_file,
        file_format=file_format,
        redis_lines=lines,
    )


def alert_rules() -> str:
    """The Prometheus alert rules the portal ships (``templates/alert_rules.yml``)."""
    package = resources.files("hpcportal.services.operations")
    return (package / "templates" / "alert_rules.yml").read_text(encoding="utf-8")


def render_alertmanager(
    urls: list[str],
    credentials_file: str = ALERTMANAGER_TOKEN_FILE,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> str:
    """``alertmanager.yml``: one route, every alert to the portal's receiver at each of
    ``urls`` with the bearer token of ``credentials_file``, resolutions included. Several
    URLs (one per replica, without a front end) deliver each alert to every replica;
    the receiver stores it once."""
    return _render(
        "alertmanager.yml.j2",
        urls=urls,
        credentials_file=credentials_file,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=repeat_interval,
    )


def alert_receiver_urls(config: ClusterConfig) -> list[str]:
    """The front end's virtual IP when there is one, else every portal server."""
    if config.front_end is not None:
        front = config.front_end
        return [f"http://{_host(front.virtual_ip)}:{front.port}{ALERT_RECEIVER_PATH}"]
    return [f"http://{_host(s.address)}:{s.port}{ALERT_RECEIVER_PATH}" for s in config.servers]


@dataclass(frozen=True)
class Rendered:
    """The files (path relative to the output directory → text) and what to do with them."""

    files: dict[str, str]
    steps: list[str]


def render_all(config: ClusterConfig) -> Rendered:
    """Every file the configuration calls for, and the steps to install them."""
    files: dict[str, str] = {"haproxy/haproxy.cfg": render_haproxy(config)}
    steps = ["On each front end: install haproxy/haproxy.cfg as /etc/haproxy/haproxy.cfg."]
    if config.front_end is not None:
        for host in config.front_end.hosts:
            files[f"keepalived/{host.name}.conf"] = render_keepalived(config.front_end, host.name)
        steps.append(
            "On each front end <name>: install keepalived/<name>.conf as "
            "/etc/keepalived/keepalived.conf; systemctl restart haproxy keepalived."
        )
    for server in config.servers:
        files[f"systemd/{server.name}/hpcportal.service"] = render_systemd_unit(config, server.name)
    files["portal/portal.env"] = render_portal_env(config)
    steps.append(
        "On each portal server <name>: install portal/portal.env as "
        f"{config.portal.environment_file} (mode 0600) and set the JWT secret in it; the "
        f"secrets files ({config.secrets.secret_key_file}, the database password file), "
        "the same on every server; systemd/<name>/hpcportal.service in "
        "/etc/systemd/system/; then systemctl enable --now hpcportal."
    )
    _render_database(config, files, steps)
    _render_redis(config, files, steps)
    files["alertmanager/alertmanager.yml"] = render_alertmanager(alert_receiver_urls(config))
    files["prometheus/hpcportal-alert-rules.yml"] = alert_rules()
    steps.append(
        "On the Prometheus host: add prometheus/hpcportal-alert-rules.yml to rule_files and "
        "the Alertmanager to alerting.alertmanagers in prometheus.yml; install "
        "alertmanager/alertmanager.yml as /etc/prometheus/alertmanager.yml; write one "
        f"random token in {ALERTMANAGER_TOKEN_FILE} (owner prometheus, mode 0600) and the "
        "same in the portal's alertmanager_token_file on every server (amtool check-config "
        "and promtool check rules verify them)."
    )
    if config.slurm is not None:
        files["slurm/slurm.conf.ha"] = render_slurm(config.slurm)
        steps.append(
            "Replace the SlurmctldHost/StateSaveLocation lines of slurm.conf on every "
            "Slurm host with slurm/slurm.conf.ha, then scontrol reconfigure."
        )
    return Rendered(files=files, steps=steps)


def _render_database(config: ClusterConfig, files: dict[str, str], steps: list[str]) -> None:
    database = config.database
    if isinstance(database, PostgresDatabase):
        for host in database.hosts():
            files[f"postgresql/{host.name}.conf"] = render_postgresql(database, host)
        files["postgresql/pg_hba.conf"] = render_pg_hba(config, database)
        steps.append(
            "On each PostgreSQL host <name>: include postgresql/<name>.conf from "
            "postgresql.conf and append postgresql/pg_hba.conf to pg_hba.conf; on a standby, "
            "pg_basebackup from the primary, touch standby.signal, and put the replication "
            f"password in {database.replication_passfile} (mode 0600, owner postgres)."
        )
    elif isinstance(database, GaleraDatabase):
        for node in database.nodes:
            files[f"galera/{node.name}.cnf"] = render_galera(database, node)
        steps.append(
            "On each Galera node <name>: install galera/<name>.cnf in "
            "/etc/mysql/mariadb.conf.d/60-galera.cnf; galera_new_cluster on the first "
            "node, then systemctl start mariadb on the others."
        )


def _render_redis(config: ClusterConfig, files: dict[str, str], steps: list[str]) -> None:
    redis = config.redis
    if redis is None:
        return
    auth = config.secrets.redis_password_file is not None
    hosts = [redis.server] if isinstance(redis, StandaloneRedis) else [redis.master]
    if isinstance(redis, SentinelRedis):
        hosts += redis.replicas
        for sentinel in redis.sentinels:
            files[f"redis/{sentinel.name}-sentinel.conf"] = render_sentinel(redis, sentinel)
        steps.append(
            "On each Sentinel <name>: install redis/<name>-sentinel.conf as "
            "/etc/redis/sentinel.conf (writable by redis: Sentinel rewrites it)."
        )
    for host in hosts:
        files[f"redis/{host.name}.conf"] = render_redis(redis, host, auth=auth)
    steps.append("On each Redis host <name>: install redis/<name>.conf as /etc/redis/redis.conf.")
    if auth:
        steps.append(
            f"On each Redis host: write {REDIS_AUTH_INCLUDE} (mode 0640, owner redis) with "
            "'requirepass <password>' and 'masterauth <password>' from "
            f"{config.secrets.redis_password_file}; under Sentinel, append "
            "'sentinel auth-pass <master_name> <password>' to each sentinel.conf."
        )
