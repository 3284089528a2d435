"""Placeholder: ``hpcportal jobs ...`` is being written (see the issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Work with jobs through a portal's API.", no_args_is_help=True)
