"""``hpcportal config show``: the configuration in force, each value with its origin."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hpcportal.config_sources import config_file, secrets_dirs


def show(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per setting, for scripts.")
    ] = False,
) -> None:
    """Print every setting as TOML with where it came from (default, file, environment,
    secret file); secrets and URL passwords are masked."""
    from pydantic import ValidationError

    from hpcportal.services.operations.config_origin import entries

    try:
        shown = entries()
    except (ValidationError, ValueError) as exc:
        typer.echo(f"The configuration is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        for entry in shown:
            typer.echo(
                json.dumps({"name": entry.name, "value": entry.value, "origin": entry.origin})
            )
        return
    toml = config_file()
    typer.echo(f"# configuration file: {toml if toml else 'none'}")
    folders = ", ".join(str(f) for f in secrets_dirs()) or "none"
    typer.echo(f"# secret files from: {folders}")
    width = max(len(f"{e.name} = {e.value}") for e in shown if len(e.value) < 60)
    for entry in shown:
        line = f"{entry.name} = {entry.value}"
        typer.echo(f"{line:<{width}}  # {entry.origin}")
