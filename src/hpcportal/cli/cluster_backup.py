"""``hpcportal cluster backup | restore | backups | prune``: the portal's state in a folder.

Registered on ``cluster_app`` by ``register``. The use cases are in
``services/operations/backup.py`` and ``retention.py``; this module parses options,
prints, and turns their refusals into ``Error: ...`` and exit status 1 (never a
traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from hpcportal.config import Settings, get_settings

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="The backup directory (default: the backup_dir setting)."),
]
DailyOption = Annotated[
    int | None, typer.Option("--keep-daily", min=0, help="Days kept (default: backup_keep_daily).")
]
WeeklyOption = Annotated[
    int | None,
    typer.Option("--keep-weekly", min=0, help="Weeks kept (default: backup_keep_weekly)."),
]
MonthlyOption = Annotated[
    int | None,
    typer.Option("--keep-monthly", min=0, help="Months kept (default: backup_keep_monthly)."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


def _backup_dir(settings: Settings, given: Path | None) -> Path:
    directory = given or settings.backup_dir
    if directory is None:
        raise _fail("no backup directory: set backup_dir in the configuration or pass --dir")
    return directory.absolute()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _prune(
    settings: Settings,
    directory: Path,
    daily: int | None,
    weekly: int | None,
    monthly: int | None,
    *,
    dry_run: bool,
) -> None:
    from hpcportal.services.operations.retention import Policy, apply_retention

    try:
        policy = Policy(
            settings.backup_keep_daily if daily is None else daily,
            settings.backup_keep_weekly if weekly is None else weekly,
            settings.backup_keep_monthly if monthly is None else monthly,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    decision = apply_retention(directory, policy, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for backup in decision.delete:
        typer.echo(f"{verb} {backup.path.name}")
    typer.echo(
        f"retention (daily {policy.daily}, weekly {policy.weekly}, monthly {policy.monthly}): "
        f"{len(decision.keep)} kept, {len(decision.delete)} {verb}"
    )


def register(app: typer.Typer, cluster_config: Callable[[Path | None], Path]) -> None:
    """Add the backup commands to ``app``; ``cluster_config`` finds cluster_config.yaml."""

    @app.command("backup")
    def backup(
        directory: DirOption = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                "-c",
                envvar="HPCPORTAL_CLUSTER_CONFIG",
                help="cluster_config.yaml to include (default: as `cluster validate`).",
            ),
        ] = None,
        prune: Annotated[
            bool, typer.Option("--prune/--no-prune", help="Apply retention afterwards.")
        ] = True,
        keep_daily: DailyOption = None,
        keep_weekly: WeeklyOption = None,
        keep_monthly: MonthlyOption = None,
    ) -> None:
        """Back up the database, configuration, secret key and site apps, with a manifest."""
        from hpcportal.services.operations.backup import BackupRefused, create_backup, sources_of

        settings = get_settings()
        target = _backup_dir(settings, directory)
        found = cluster_config(config)
        sources = sources_of(settings, found if found.is_file() else None)
        try:
            made = create_backup(settings, target, sources)
        except BackupRefused as exc:
            raise _fail(f"no backup was made: {exc}") from None
        except OSError as exc:
            raise _fail(f"no backup was made: {exc.filename}: {exc.strerror}") from None
        typer.echo(
            f"backup {made.path} ({len(made.manifest.entries) if made.manifest else 0} files, "
            f"{_human(made.size)})"
        )
        if prune:
            _prune(settings, target, keep_daily, keep_weekly, keep_monthly, dry_run=False)

    @app.command("backups")
    def backups(
        directory: DirOption = None,
        check: Annotated[
            bool, typer.Option("--verify", help="Also check every file's checksum.")
        ] = False,
    ) -> None:
        """List the backups, oldest first (with --verify: whether each is intact)."""
        from hpcportal.services.operations.backup import BackupCorrupt, list_backups, verify_backup

        target = _backup_dir(get_settings(), directory)
        found = list_backups(target)
        if not found:
            typer.echo(f"no backups in {target}")
            return
        for item in found:
            if item.manifest is None:
                typer.echo(f"{item.path.name}  UNREADABLE: {item.error}")
                continue
            m = item.manifest
            state = ""
            if check:
                try:
                    verify_backup(item.path)
                    state = "  intact"
                except BackupCorrupt as exc:
                    state = f"  DAMAGED: {'; '.join(exc.problems)}"
            typer.echo(
                f"{item.path.name}  {m.created_at:%Y-%m-%d %H:%M:%SZ}  {_human(item.size)}  "
                f"portal {m.portal_version}  revision {m.alembic_revision}  "
                f"{m.database_backend}{state}"
            )

    @app.command("prune")
    def prune_command(
        directory: DirOption = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Only list what would be deleted.")
        ] = False,
        keep_daily: DailyOption = None,
        keep_weekly: WeeklyOption = None,
        keep_monthly: MonthlyOption = None,
    ) -> None:
        """Delete the backups retention does not keep (daily, weekly, monthly)."""
        settings = get_settings()
        target = _backup_dir(settings, directory)
        _prune(settings, target, keep_daily, keep_weekly, keep_monthly, dry_run=dry_run)

    @app.command("restore")
    def restore(
        backup_name: Annotated[
            str,
            typer.Argument(
                metavar="BACKUP", help="A backup folder, or its name in the backup directory."
            ),
        ],
        directory: DirOption = None,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    ) -> None:
        """Verify a backup and restore it (stop the portal servers first).

        The current state is kept aside first and put back if anything fails; a damaged
        backup is refused and nothing is changed.
        """
        from hpcportal.services.operations.backup import (
            BackupCorrupt,
            BackupRefused,
            RestoreFailed,
            restore_backup,
        )

        settings = get_settings()
        target = _backup_dir(settings, directory)
        path = Path(backup_name)
        if not path.is_absolute() and not path.exists():
            path = target / backup_name
        if not path.is_dir():
            raise _fail(f"no backup {path}: `hpcportal cluster backups` lists those in {target}")
        if not yes and not typer.confirm(
            f"Replace this portal's database, configuration and site apps with {path}?"
        ):
            raise typer.Exit(1)
        try:
            result = restore_backup(settings, path.absolute(), target)
        except (BackupCorrupt, BackupRefused, RestoreFailed) as exc:
            raise _fail(str(exc)) from None
        typer.echo(
            f"restored {result.restored} (made {result.manifest.created_at:%Y-%m-%d %H:%M:%SZ})"
        )
        typer.echo(f"the state before the restore is kept in {result.aside}")
