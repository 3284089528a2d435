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
    """Write every tool's configuration (HAProxy, Keepalived, Redis, database, systemd,
    Slurm) into --output, then print the steps to install them. No secret is written."""
    from hpcportal.services.operations.render import render_all

    loaded = load_or_exit(config_path(config))
    rendered = render_all(loaded)
    try:
        for relative, text in rendered.files.items():
            target = output / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"Error: cannot write {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    for relative in rendered.files:
        typer.echo(f"wrote {output / relative}")
    typer.echo("\nNext steps:")
    for number, step in enumerate(rendered.steps, start=1):
        typer.echo(f"{number}. {step}")
