"""Where settings come from, for ``Settings`` and for ``hpcportal config show``.

Highest priority first:

1. keyword arguments (tests, ``dev-cluster``);
2. ``HPCPORTAL_*`` environment variables;
3. secret files: a file named exactly as a secret setting (``jwt_secret``,
   ``database_password``, ``database_url``, ``redis_url``) in systemd's
   ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``), then in ``/etc/hpcportal/secrets/``
   (``HPCPORTAL_SECRETS_DIR`` names another folder; empty: none). Secrets thus never
   have to sit in the TOML file or in a unit's environment, which ``systemctl show``
   and ``/proc/<pid>/environ`` reveal;
4. the TOML file: ``HPCPORTAL_CONFIG`` if set (empty: none), else
   ``/etc/hpcportal/portal.toml`` when it exists, where an administrator looks first;
5. the defaults in ``config.Settings``.

``*_file`` settings (``jwt_secret_file``, ``database_password_file``) name one file
each from the TOML file or the environment; ``Settings`` reads them after the sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
)

#: Read when ``HPCPORTAL_CONFIG`` is not set, if it exists.
DEFAULT_CONFIG_FILE = Path("/etc/hpcportal/portal.toml")
#: Folder of secret files, one per secret setting, named as the setting.
DEFAULT_SECRETS_DIR = Path("/etc/hpcportal/secrets")
#: Settings that may come from a secret file (and are masked by ``config show``).
SECRET_FILE_SETTINGS = ("jwt_secret", "database_password", "database_url", "redis_url")


def config_file() -> Path | None:
    """The TOML file in force: ``HPCPORTAL_CONFIG`` (empty: none), else the default
    file when it exists."""
    named = os.environ.get("HPCPORTAL_CONFIG")
    if named is not None:
        return Path(named) if named else None
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def secrets_dirs() -> list[Path]:
    """Folders searched for secret files, first match wins; only those that exist."""
    found: list[Path] = []
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        found.append(Path(credentials))
    named = os.environ.get("HPCPORTAL_SECRETS_DIR")
    if named is None:
        found.append(DEFAULT_SECRETS_DIR)
    elif named:
        found.append(Path(named))
    return [folder for folder in found if folder.is_dir()]


def read_secret_file(path: Path) -> str:
    """A secret file's text without its final newline (``echo`` adds one)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path}: {exc.strerror}") from exc


class SecretFilesSource(PydanticBaseSettingsSource):
    """Secret settings from files named after them (see the module docstring)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        #: Setting name -> the file it came from (for ``config show``).
        self.files: dict[str, Path] = {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        folders = secrets_dirs()
        for name in SECRET_FILE_SETTINGS:
            for folder in folders:
                path = folder / name
                if path.is_file():
                    values[name] = read_secret_file(path)
                    self.files[name] = path
                    break
        return values


def named_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource | None,
    env_settings: PydanticBaseSettingsSource,
) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """The sources in priority order, each with the name ``config show`` gives it."""
    sources: list[tuple[str, PydanticBaseSettingsSource]] = []
    if init_settings is not None:
        sources.append(("argument", init_settings))
    sources.append(("environment", env_settings))
    sources.append(("secret file", SecretFilesSource(settings_cls)))
    toml = config_file()
    if toml is not None:
        sources.append((f"file {toml}", TomlConfigSettingsSource(settings_cls, toml_file=toml)))
    return sources
