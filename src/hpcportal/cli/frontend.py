"""``hpcportal config render-frontend``: a TLS front end (nginx or Apache) for the portal.

Registered on the ``config`` group (``cli/config.py``); the rendering itself is
``services/operations/frontend.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpcportal.config import get_settings
from hpcportal.services.operations.frontend import (
    FrontendError,
    FrontendOptions,
    Kind,
    render,
)


def render_frontend(
    server_name: Annotated[str, typer.Option(help="The portal's public host name.")],
    cert: Annotated[Path, typer.Option(help="TLS certificate chain (PEM), absolute path.")],
    key: Annotated[Path, typer.Option(help="TLS private key (PEM), absolute path.")],
    kind: Annotated[str, typer.Option(help="nginx or apache.")] = "nginx",
    upstream: Annotated[
        str, typer.Option(help="The portal's address (its host:port settings).")
    ] = "127.0.0.1:8080",
    listen: Annotated[str, typer.Option(help="TLS port, or address:port.")] = "443",
    redirect_from: Annotated[
        str, typer.Option(help="Plain-HTTP port redirected to HTTPS; empty: none.")
    ] = "80",
    hsts: Annotated[bool, typer.Option(help="Send Strict-Transport-Security.")] = True,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print a front-end configuration: TLS, HTTP/2, WebSocket upgrade, unbuffered
    output stream, upload body sizes from the settings, X-Forwarded-For/-Proto."""
    options = FrontendOptions(
        server_name=server_name,
        cert=cert,
        key=key,
        upstream=upstream,
        listen=listen,
        redirect_from=redirect_from or None,
        hsts=hsts,
    )
    if kind not in ("nginx", "apache"):
        typer.echo(f"Error: --kind {kind!r}: nginx or apache", err=True)
        raise typer.Exit(2)
    selected: Kind = "nginx" if kind == "nginx" else "apache"
    try:
        text = render(selected, options, get_settings())
    except FrontendError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"Wrote {output}.", err=True)
