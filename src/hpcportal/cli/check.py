"""``hpcportal check``: what the portal relies on, checked the way it is configured."""

from __future__ import annotations

from typing import Annotated

import typer

MARK = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}


def check(
    frontend: Annotated[
        str | None,
        typer.Option(help="The portal's public URL (https://...): check the front end too."),
    ] = None,
) -> None:
    """Check Slurm, the database and its migrations, Redis, Prometheus, the run-as
    helper and its sudoers rule (and the front end); exit 1 if any check failed."""
    from hpcportal.cli.main import resolve_settings
    from hpcportal.services.operations.checks import run_checks

    results = run_checks(resolve_settings(), frontend_url=frontend)
    for result in results:
        typer.echo(f"{MARK[result.outcome]} {result.name}: {result.detail}")
        if result.fix:
            typer.echo(f"     fix: {result.fix}")
    failed = [r.name for r in results if r.outcome == "failed"]
    if failed:
        typer.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo("All checks passed.")
