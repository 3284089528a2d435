"""The ``hpcportal`` command: serve the portal, run the dev cluster, migrate the database."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from hpcportal import __version__
from hpcportal.cli.admin import admin_app
from hpcportal.cli.admin_accounts import account_app, user_app
from hpcportal.cli.admin_delivery import delivery_app
from hpcportal.cli.admin_qos import qos_app
from hpcportal.cli.admin_reservations import reservation_app
from hpcportal.cli.check import check
from hpcportal.cli.cluster import cluster_app
from hpcportal.cli.config import config_app
from hpcportal.cli.devcluster import app as devcluster_app
from hpcportal.cli.jobs import app as jobs_app
from hpcportal.cli.notifications import app as notifications_app
from hpcportal.cli.reports import app as reports_app
from hpcportal.cli.runas import app as runas_app
from hpcportal.config import Settings, get_settings

app = typer.Typer(help="hpcportal: a web portal for Slurm clusters.", no_args_is_help=True)
app.add_typer(devcluster_app, name="dev-cluster")
app.add_typer(jobs_app, name="jobs")
app.add_typer(reports_app, name="reports")
app.add_typer(notifications_app, name="notifications")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(qos_app, name="qos")
admin_app.add_typer(account_app, name="account")
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(reservation_app, name="reservation")
admin_app.add_typer(delivery_app, name="delivery")
app.add_typer(runas_app, name="runas")
app.add_typer(config_app, name="config")
app.add_typer(cluster_app, name="cluster")
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("check")(check)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit (`hpcportal version` also asks Slurm).",
        ),
    ] = False,
) -> None:
    """hpcportal: a web portal for Slurm clusters."""


def resolve_settings() -> Settings:
    """The configured settings, pointed at the dev cluster when it is up and no Slurm is set."""
    settings = get_settings()
    if settings.slurm_conf is None:
        from hpcportal.devcluster import DevCluster

        cluster = DevCluster(settings.devcluster_dir)
        if cluster.is_up():
            typer.echo(f"Using the dev cluster's SLURM_CONF: {cluster.slurm_conf}", err=True)
            update: dict[str, object] = {"slurm_conf": cluster.slurm_conf}
            if settings.slurm_bin_dir is None and cluster.bin_dir is not None:
                # A 24.11/26.05 cluster: its own clients, for the portal and as users.
                release = cluster.release.name
                typer.echo(f"Using Slurm {release}'s clients in {cluster.bin_dir}", err=True)
                update["slurm_bin_dir"] = cluster.bin_dir
            settings = settings.model_copy(update=update)
    return settings


def refuse_exposed_database(settings: Settings) -> None:
    """Stop before serving from (or migrating) an SQLite file others can read."""
    from hpcportal.db.sqlite_file import DatabaseFileExposed, check_private

    try:
        check_private(settings.database_url)
    except DatabaseFileExposed as exc:
        typer.echo(f"Refusing to start. {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Migrate the database if needed and serve the portal (one process, one refresher).

    Refuses an SQLite database file that other accounts can read.
    """
    import uvicorn

    from hpcportal import log_setup
    from hpcportal.app import create_app
    from hpcportal.db.migrate import upgrade
    from hpcportal.errors import Misconfigured
    from hpcportal.services import signing_key

    settings = resolve_settings()
    # Plain lines for journald or JSON (log_format), redacted, before any request line.
    log_setup.configure(log_level, settings.log_format)
    refuse_exposed_database(settings)
    if warning := signing_key.shared_key_warning(settings):
        logging.getLogger("hpcportal").warning(warning)
    try:
        settings = signing_key.with_signing_key(settings)
    except Misconfigured as exc:
        typer.echo(f"Refusing to start. {exc.message}", err=True)
        raise typer.Exit(2) from exc
    upgrade(settings)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the root handler configured above
        # X-Forwarded-For is applied by the app itself, only from trusted_proxies
        # (create_app), so uvicorn must not apply its own loopback default on top.
        proxy_headers=False,
        ws_per_message_deflate=settings.websocket_compression,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    from hpcportal.db.migrate import upgrade

    settings = get_settings()
    refuse_exposed_database(settings)
    upgrade(settings)
    typer.echo(f"Database at the newest revision: {settings.database_url.split('@')[-1]}")


@app.command()
def version(
    slurm: Annotated[
        bool,
        typer.Option(
            "--slurm/--no-slurm",
            help="Also ask the configured Slurm which release runs and which JSON format "
            "the portal reads from it.",
        ),
    ] = True,
) -> None:
    """Print the version, and the Slurm release and JSON format the portal would use.

    Exits 1 when that Slurm is one the portal does not read (``slurm_unsupported``).
    """
    from hpcportal.errors import PortalError, SlurmUnsupported
    from hpcportal.slurm.adapter import SlurmAdapter
    from hpcportal.slurm.executor import SlurmExecutor

    typer.echo(__version__)
    if not slurm:
        return
    try:
        cluster = SlurmAdapter(SlurmExecutor.from_settings(get_settings())).cluster()
    except SlurmUnsupported as exc:
        typer.echo(f"Slurm: unsupported: {exc.message}")
        raise typer.Exit(1) from exc
    except PortalError as exc:  # not installed, not reachable, misconfigured
        typer.echo(f"Slurm: not usable: {exc.message}")
        return
    typer.echo(cluster.describe())


if __name__ == "__main__":
    app()
