"""``hpcportal dev-cluster up|down|status``: a real Slurm cluster on this host."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from hpcportal.devcluster import DevCluster, DevClusterError

app = typer.Typer(
    name="dev-cluster",
    help="Run a real single-host Slurm cluster (munge, slurmdbd, slurmctld, 6 slurmds).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="HPCPORTAL_DEVCLUSTER_DIR",
        help="Directory for all generated config and state.",
        show_default=True,
    ),
]
DEFAULT_DIR = Path(".devcluster")
SlurmOption = Annotated[
    str | None,
    typer.Option(
        "--slurm",
        envvar="HPCPORTAL_DEVCLUSTER_SLURM",
        help=(
            "Slurm release: 22.05 (this host's packages), 24.11 (Debian 13 root) or 26.05 "
            "(Debian sid root). Default: the directory's release, else 22.05."
        ),
    ),
]
PrivateDataOption = Annotated[
    str | None,
    typer.Option(
        "--private-data",
        help=(
            "PrivateData for slurm.conf and slurmdbd.conf, e.g. jobs,usage ('none' clears it). "
            "Default: the directory's, else none."
        ),
    ),
]


def _enable_progress_log() -> None:
    """Show the steps ``up``/``down`` take on stderr, keeping stdout for the report."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dev-cluster: %(message)s"))
    logger = logging.getLogger("hpcportal.devcluster")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _fail(error: DevClusterError) -> typer.Exit:
    typer.echo(f"error: {error.message}", err=True)
    if error.details:
        typer.echo(error.details, err=True)
    return typer.Exit(code=1)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table; no colour, so it can be pasted anywhere."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form of ``DevCluster.status()``."""
    components = _table(
        ["COMPONENT", "PID", "STATE"],
        [(c["name"], c["pid"], "up" if c["running"] else "DOWN") for c in status["components"]],
    )
    nodes = _table(
        ["NODE", "STATE", "PARTITIONS", "REASON"],
        [(n["name"], n["state"], ",".join(n["partitions"]), n["reason"]) for n in status["nodes"]],
    )
    users = _table(
        ["USER", "PASSWORD", "GROUP", "ACCOUNT", "ADMIN"],
        [
            (u["name"], u["password"], u["group"], u["account"], "yes" if u["admin"] else "")
            for u in status["users"]
        ],
    )
    version = status.get("slurm_version") or "not answering"
    parts = [
        f"dev cluster: {'UP' if status['ok'] else 'NOT OK'}  ({status['dir']})",
        f"slurm: {status.get('release', '22.05')} ({version})",
        f"PrivateData: {status.get('private_data', 'none')}",
        f"export SLURM_CONF={status['slurm_conf']}",
        f"prometheus: {status.get('prometheus_url', 'none')}",
    ]
    if status.get("bin_dir"):
        parts += [
            f"export PATH={status['bin_dir']}:$PATH",
            f"export HPCPORTAL_SLURM_BIN_DIR={status['bin_dir']}",
        ]
    parts += [
        "",
        components,
        "",
        nodes if status["nodes"] else "no nodes (slurmctld is not answering)",
        "",
        users,
    ]
    parts += [f"note: {note}" for note in status["notes"]]
    return "\n".join(parts)


@app.command()
def up(
    directory: DirOption = DEFAULT_DIR,
    slurm: SlurmOption = None,
    private_data: PrivateDataOption = None,
    backup_controller: Annotated[
        bool | None,
        typer.Option(
            "--backup-controller/--no-backup-controller",
            help="Also run a backup slurmctld (SlurmctldHost twice, shared state directory, "
            "SlurmctldTimeout 8 s; Slurm 22.05 only). Default: the directory's choice.",
            show_default=False,
        ),
    ] = None,
    scrape_interval: Annotated[
        int | None,
        typer.Option(
            "--scrape-interval",
            help="Seconds between the cluster's Prometheus scrapes. Default: the directory's, "
            "else 5.",
        ),
    ] = None,
    portal_target: Annotated[
        str | None,
        typer.Option(
            "--portal-target",
            help="host:port of a portal whose /metrics Prometheus scrapes. Default: the "
            "directory's, else 127.0.0.1:8080 (plus 10 per port slot).",
        ),
    ] = None,
) -> None:
    """Install, configure and start the cluster and its monitoring; wait for idle nodes."""
    _enable_progress_log()
    try:
        cluster = DevCluster(
            directory,
            release=slurm,
            private_data=private_data,
            backup_controller=backup_controller,
            scrape_interval=scrape_interval,
            portal_target=portal_target,
        )
        status = cluster.up()
    except DevClusterError as error:
        raise _fail(error) from error
    typer.echo(format_status(status))
    if not status["ok"]:
        raise typer.Exit(code=1)


@app.command()
def down(
    directory: DirOption = DEFAULT_DIR,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Also delete the directory and the accounting database."),
    ] = False,
) -> None:
    """Stop the daemons `up` started (MariaDB only if `up` started it)."""
    _enable_progress_log()
    try:
        stopped = DevCluster(directory).down(purge=purge)
    except DevClusterError as error:
        raise _fail(error) from error
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    directory: DirOption = DEFAULT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show components, nodes, demo users and SLURM_CONF; exit 1 if anything is down."""
    report = DevCluster(directory).status()
    typer.echo(json.dumps(report, indent=2) if as_json else format_status(report))
    if not report["ok"]:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
