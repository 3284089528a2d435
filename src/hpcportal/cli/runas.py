"""``hpcportal runas``: install the privileged boundary for a service account."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpcportal.runas.install import (
    InstallError,
    ensure_service_account,
    install,
    sudoers_rule,
)

app = typer.Typer(help="The run-as boundary: helper and sudoers rule.", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", help="The portal's service account.")]
HelperOption = Annotated[Path, typer.Option(help="Where the helper is installed.")]


@app.command("install")
def install_command(
    user: UserOption = "hpcportal",
    helper: HelperOption = Path("/usr/local/libexec/hpcportal-runas"),
    min_uid: Annotated[int, typer.Option(help="Lowest UID the helper acts as.")] = 1000,
    create_account: Annotated[
        bool, typer.Option(help="Create the service account (system user, group shadow).")
    ] = False,
    slurm_bin_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the Slurm clients to run as users (the portal's slurm_bin_dir); "
            "root-owned, not writable by group or others. Default: the system's PATH."
        ),
    ] = None,
) -> None:
    """Install the helper (root-owned) and /etc/sudoers.d/hpcportal (checked by visudo)."""
    try:
        if create_account:
            ensure_service_account(user)
        done = install(user, helper, min_uid=min_uid, slurm_bin_dir=slurm_bin_dir)
    except InstallError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Installed {done.helper} and {done.sudoers} for {done.service_user}.")
    if done.slurm_dir is not None:
        typer.echo(f"The helper runs Slurm clients from {done.slurm_dir} first.")


@app.command("sudoers")
def sudoers_command(
    user: UserOption = "hpcportal",
    helper: HelperOption = Path("/usr/local/libexec/hpcportal-runas"),
) -> None:
    """Print the sudoers rule (for configuration management)."""
    typer.echo(sudoers_rule(user, helper), nl=False)
