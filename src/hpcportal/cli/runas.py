"""``hpcportal runas``: install the privileged boundary for a service account."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpcportal.config import Settings
from hpcportal.runas.denied import DEFAULT_SLURM_CONF, DenyListError, deny_list
from hpcportal.runas.install import (
    SUDOERS_FILE,
    InstallError,
    ensure_service_account,
    install,
    sudoers_rule,
    uninstall,
)

app = typer.Typer(help="The run-as boundary: helper and sudoers rule.", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", help="The portal's service account.")]
HelperOption = Annotated[Path, typer.Option(help="Where the helper is installed.")]
SudoersOption = Annotated[
    Path,
    typer.Option(
        help="The sudoers rule's file (in /etc/sudoers.d, no dot in its name: sudo skips those)."
    ),
]
SlurmConfOption = Annotated[
    Path | None,
    typer.Option(
        help="slurm.conf to read SlurmUser and SlurmdUser from (refused by the helper and "
        "by sudo). Default: the portal's slurm_conf, else /etc/slurm/slurm.conf."
    ),
]
NoSlurmConfOption = Annotated[
    bool,
    typer.Option(
        "--no-slurm-conf",
        help="Read no slurm.conf (a configless client): name SlurmUser and SlurmdUser in "
        "runas_deny_users or --deny-user yourself.",
    ),
]
DenyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--deny-user",
        help="An account never acted as (repeat it). Default: the portal's runas_deny_users.",
    ),
]
GroupOption = Annotated[
    str | None,
    typer.Option(
        help="Limit sudo to the members of this Unix group. Default: the portal's runas_group."
    ),
]


def _daemon_conf(settings: Settings, slurm_conf: Path | None, no_slurm_conf: bool) -> Path | None:
    """The slurm.conf to read, which must exist unless reading none was asked for."""
    if no_slurm_conf:
        return None
    conf = slurm_conf or settings.slurm_conf or DEFAULT_SLURM_CONF
    if not conf.is_file():
        raise InstallError(
            f"{conf} is not a file: name slurm.conf with --slurm-conf, or pass "
            "--no-slurm-conf and list SlurmUser and SlurmdUser with --deny-user"
        )
    return conf


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
    slurm_conf: SlurmConfOption = None,
    no_slurm_conf: NoSlurmConfOption = False,
    deny_user: DenyOption = None,
    group: GroupOption = None,
    sudoers: SudoersOption = SUDOERS_FILE,
) -> None:
    """Install the helper (root-owned) and /etc/sudoers.d/hpcportal (checked by visudo).

    The helper and the rule refuse slurm.conf's SlurmUser and SlurmdUser and the deny
    list whatever their shell; with a group, sudo acts only as its members.
    """
    settings = Settings()
    try:
        conf = _daemon_conf(settings, slurm_conf, no_slurm_conf)
        if create_account:
            ensure_service_account(user)
        done = install(
            user,
            helper,
            min_uid=min_uid,
            slurm_bin_dir=slurm_bin_dir,
            slurm_conf=conf,
            deny_users=settings.runas_deny_users if deny_user is None else deny_user,
            group=group or settings.runas_group,
            sudoers=sudoers,
        )
    except InstallError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Installed {done.helper} and {done.sudoers} for {done.service_user}.")
    if done.slurm_dir is not None:
        typer.echo(f"The helper runs Slurm clients from {done.slurm_dir} first.")
    typer.echo(f"It never acts as: {', '.join(sorted(done.denied))}.")
    if done.group is not None:
        typer.echo(f"sudo lets it act only as members of group {done.group}.")


@app.command("uninstall")
def uninstall_command(
    helper: HelperOption = Path("/usr/local/libexec/hpcportal-runas"),
    sudoers: SudoersOption = SUDOERS_FILE,
) -> None:
    """Remove the sudoers rule and the helper that `runas install` wrote (idempotent).

    A file at either path that `runas install` did not write is left alone (exit 1).
    The service account is kept: files it owns may remain.
    """
    try:
        done = uninstall(helper, sudoers=sudoers)
    except InstallError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path, removed in ((sudoers, done.sudoers), (helper, done.helper)):
        typer.echo(f"Removed {path}." if removed else f"{path}: already absent.")


@app.command("sudoers")
def sudoers_command(
    user: UserOption = "hpcportal",
    helper: HelperOption = Path("/usr/local/libexec/hpcportal-runas"),
    slurm_conf: SlurmConfOption = None,
    no_slurm_conf: NoSlurmConfOption = False,
    deny_user: DenyOption = None,
    group: GroupOption = None,
) -> None:
    """Print the sudoers rule (for configuration management)."""
    settings = Settings()
    try:
        conf = _daemon_conf(settings, slurm_conf, no_slurm_conf)
        names = settings.runas_deny_users if deny_user is None else deny_user
        deny = deny_list(names, conf)
        rule = sudoers_rule(user, helper, group=group or settings.runas_group, deny=deny)
    except (InstallError, DenyListError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(rule, nl=False)
