"""``hpcportal cluster ...``: several portal servers described by one ``cluster_config.yaml``.

``validate`` explains a broken file line by line; ``render`` writes every tool's
configuration (HAProxy, Keepalived, Redis and Sentinel, PostgreSQL or Galera,
systemd, Slurm's controller lines); ``discover`` asks each configured server whether
it answers; ``join`` adds a server; ``status`` shows the leader, replicas, database,
Redis and migration state. Other command groups (backup, restore) register on
``cluster_app`` too. Errors are printed as ``Error: ...`` with exit status 1 (2 for a
file that does not validate); no traceback is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpcportal.cli.cluster_backup import register as register_backup_commands
from hpcportal.services.operations.cluster_config import ClusterConfig
from hpcportal.services.operations.config_file import ConfigInvalid, load_config_file
from hpcportal.services.operations.discover import ReplicaProbe

DEFAULT_CONFIG = Path("/etc/hpcportal/cluster_config.yaml")

cluster_app = typer.Typer(
    help="Operate several portal servers from one cluster_config.yaml.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="HPCPORTAL_CLUSTER_CONFIG",
        help="The cluster description (default: ./cluster_config.yaml if present, "
        "else /etc/hpcportal/cluster_config.yaml).",
        show_default=False,
    ),
]


def config_path(given: Path | None) -> Path:
    """``--config`` (or ``$HPCPORTAL_CLUSTER_CONFIG``), else ./cluster_config.yaml, else /etc."""
    if given is not None:
        return given
    local = Path("cluster_config.yaml")
    return local if local.exists() else DEFAULT_CONFIG


register_backup_commands(cluster_app, config_path)


def load_or_exit(path: Path) -> ClusterConfig:
    """The validated configuration, or every problem printed and exit status 2."""
    try:
        return load_config_file(path)
    except ConfigInvalid as exc:
        for issue in exc.issues:
            typer.echo(f"{exc.source}: {issue}", err=True)
        count = len(exc.issues)
        typer.echo(f"{count} problem{'s' if count != 1 else ''}; nothing was done.", err=True)
        raise typer.Exit(2) from None


@cluster_app.command()
def validate(config: ConfigOption = None) -> None:
    """Check cluster_config.yaml: its schema, and that its parts agree with each other."""
    path = config_path(config)
    loaded = load_or_exit(path)
    typer.echo(f"{path}: valid: {len(loaded.servers)} server(s), database {loaded.database.engine}")


@cluster_app.command()
def render(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the files into.")
    ],
    config: ConfigOption = None,
) -> None:
    """Write every tool's configuration into --output and print the install steps.

    HAProxy, Keepalived, Redis and Sentinel, PostgreSQL or Galera, portal.env, systemd
    units, Slurm's SlurmctldHost lines. No secret is written."""
    from hpcportal.services.operations.render import render_all

    loaded = load_or_exit(config_path(config))
    rendered = render_all(loaded)
    write_files(output, rendered.files)
    print_steps(rendered.steps)


def write_files(output: Path, files: dict[str, str]) -> None:
    """Write rendered files below ``output``; an unwritable place is a clear error."""
    try:
        for relative, text in files.items():
            target = output / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"Error: cannot write {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    for relative in files:
        typer.echo(f"wrote {output / relative}")


def print_steps(steps: list[str]) -> None:
    typer.echo("\nNext steps:")
    for number, step in enumerate(steps, start=1):
        typer.echo(f"{number}. {step}")


TimeoutOption = Annotated[
    float, typer.Option(min=0.1, max=60.0, help="Seconds to wait for each server.")
]


@cluster_app.command()
def discover(config: ConfigOption = None, timeout: TimeoutOption = 2.0) -> None:
    """Which configured servers answer, whether they are ready, and their roles.

    Exits 1 when no server answers."""
    from hpcportal.services.operations.discover import discover as discover_servers

    probes = discover_servers(load_or_exit(config_path(config)), timeout)
    for probe in probes:
        typer.echo(describe_probe(probe))
    if not any(probe.answers for probe in probes):
        typer.echo("No configured server answers.", err=True)
        raise typer.Exit(1)


def describe_probe(probe: ReplicaProbe) -> str:
    if not probe.answers:
        return f"{probe.name:<16} {probe.url:<28} no answer: {probe.error}"
    ready = "ready" if probe.ready else "not ready"
    age = (
        f", snapshot {probe.snapshot_age_seconds:.0f} s old"
        if probe.snapshot_age_seconds is not None
        else ""
    )
    problems = f" ({'; '.join(probe.problems)})" if probe.problems and not probe.ready else ""
    return (
        f"{probe.name:<16} {probe.url:<28} {ready}, role {probe.role}, "
        f"version {probe.version or 'unknown'}{age}, {probe.elapsed_ms:.0f} ms{problems}"
    )


@cluster_app.command()
def join(
    name: Annotated[str, typer.Option(help="The new server's host name.")],
    address: Annotated[str, typer.Option(help="The IP address it listens on.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Its port.")] = 8080,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Also render every file into this directory."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a server to cluster_config.yaml (comments kept), then print what to install where."""
    from hpcportal.services.operations.join import join as join_server

    path = config_path(config)
    try:
        joined = join_server(path, name, address, port)
    except ConfigInvalid as exc:
        for issue in exc.issues:
            typer.echo(f"{exc.source}: {issue}", err=True)
        typer.echo(f"{path} is unchanged.", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"Error: cannot write {path}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Added to {path} ({len(joined.config.servers)} servers now):")
    typer.echo(joined.added.rstrip("\n"))
    if output is not None:
        write_files(output, joined.rendered.files)
    print_steps(joined.steps)


@cluster_app.command()
def status(config: ConfigOption = None, timeout: TimeoutOption = 2.0) -> None:
    """Leader, replicas, migrations, database and Redis roles, snapshot age.

    Reads the database and Redis with this server's settings (HPCPORTAL_DATABASE_URL,
    HPCPORTAL_REDIS_URL): run it on a portal server."""
    from hpcportal.config import get_settings
    from hpcportal.services.operations.status import cluster_status

    report = cluster_status(load_or_exit(config_path(config)), get_settings(), timeout)
    leader = report.leader
    if leader is None:
        typer.echo(f"Leader:     unknown: {report.leader_note}")
    else:
        where = f" (server {leader.server})" if leader.server else ""
        typer.echo(
            f"Leader:     {leader.holder}{where}, token {leader.token}, leading for "
            f"{leader.age_seconds:.0f} s, lease ends in {leader.expires_in_seconds:.1f} s"
            + (f"; {report.leader_note}" if report.leader_note else "")
        )
    age = report.snapshot_age_seconds
    typer.echo(f"Snapshot:   {'unknown' if age is None else f'{age:.0f} s old'}")
    typer.echo(f"Migrations: {report.migration.value}")
    typer.echo("Replicas:")
    for probe in report.replicas:
        typer.echo(f"  {describe_probe(probe)}")
    for title, parts in (("Database:", report.database), ("Redis:", report.redis)):
        if parts:
            typer.echo(title)
            for part in parts:
                typer.echo(f"  {part.name:<16} {part.value}")
