"""``hpcportal config``: the configuration an administrator works with.

Each command lives in its own module and is registered here: ``sample``
(``cli/config_sample.py``), ``show`` (``cli/config_show.py``) and ``render-frontend``
(``cli/frontend.py``).
"""

from __future__ import annotations

import typer

from hpcportal.cli.config_sample import sample
from hpcportal.cli.config_show import show
from hpcportal.cli.frontend import render_frontend

config_app = typer.Typer(
    help="Configuration: the settings in force, a sample portal.toml, a TLS front end.",
    no_args_is_help=True,
)
config_app.command("sample")(sample)
config_app.command("show")(show)
config_app.command("render-frontend")(render_frontend)
