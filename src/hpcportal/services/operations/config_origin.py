"""``hpcportal config show``: each setting in force and where it came from.

The sources are asked one by one, in ``Settings``' own priority order
(``config_sources.named_sources``), so the origin shown is the one that won: the
environment, a secret file (which), the TOML file (which), or the default. Values are
masked before they leave this module: secret settings show ``**********``, and a URL
keeps everything but its password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_json
from pydantic_settings import EnvSettingsSource

from hpcportal.config import Settings
from hpcportal.config_sources import SecretFilesSource, named_sources
from hpcportal.services.operations.checks import masked_url

MASK = "**********"


@dataclass(frozen=True)
class Entry:
    """One setting as ``config show`` prints it."""

    name: str
    value: str  # TOML-like text, masked
    origin: str


def _display(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str) and "://" in value:
        return json.dumps(masked_url(value))
    return to_json(value).decode()


def origins() -> dict[str, str]:
    """Setting name -> where its value came from (only those not from the defaults)."""
    found: dict[str, str] = {}
    for label, source in named_sources(Settings, None, EnvSettingsSource(Settings)):
        values = source()
        for key in values:
            if key in found:
                continue
            if isinstance(source, SecretFilesSource):
                found[key] = f"secret file {source.files[key]}"
            else:
                found[key] = label
    return found


def entries(settings: Settings | None = None) -> list[Entry]:
    """Every setting, masked, with its origin; ``settings`` as read from the sources."""
    settings = settings or Settings()
    found = origins()
    shown: list[Entry] = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        origin = found.get(name, "default")
        if name == "jwt_secret" and not settings.jwt_secret_configured:
            shown.append(Entry(name, "(not set)", "default: serve keeps one in state_dir"))
            continue
        if name == "jwt_secret" and settings.jwt_secret_file and name not in found:
            origin = f"file {settings.jwt_secret_file} (jwt_secret_file)"
        if name == "database_url" and name not in found and "state_dir" in found:
            origin = "default (in state_dir)"
        shown.append(Entry(name, _display(value), origin))
    return shown
