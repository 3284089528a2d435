"""``hpcportal config sample``: the commented portal.toml with every setting.

Registered on the ``config`` group (``cli/config.py``); the text comes from
``services/operations/config_sample.py``. The Debian package installs its output as
``/etc/hpcportal/portal.toml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpcportal.services.operations.config_sample import sample_toml


def sample(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print a commented portal.toml: every setting, its description and its default."""
    text = sample_toml()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"Wrote {output}.", err=True)
