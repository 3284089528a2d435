"""The one place where configuration is read.

Values come, highest priority first, from keyword arguments (tests), ``HPCPORTAL_*``
environment variables, secret files (``$CREDENTIALS_DIRECTORY``, ``/etc/hpcportal/secrets/``),
the TOML file (``HPCPORTAL_CONFIG``, else ``/etc/hpcportal/portal.toml`` when it exists),
and the defaults below (``config_sources`` says how). Every key is documented in
``docs/architecture.md``.

There is one settings object, ``Settings``, with one instance per process
(``get_settings``). Its fields are split by the part of the portal they configure,
one small model per module, so that a group reads in one sitting, with its own
validators, next to the code that uses it:

- ``storage``: the state folder and the database;
- ``slurm``: the Slurm boundary and the snapshot's refresh;
- ``runas``: acting as the user;
- ``submit``: job submission, uploads, Apptainer;
- ``files``: the file manager and tus uploads (``FileRoot``);
- ``disk_alerts``: the disk usage watcher;
- ``monitoring``: Prometheus, idle GPUs, site metrics (``MetricSource``);
- ``reports``: report generation, rendering and kinds;
- ``identity``: logins, tokens, who may log in, per-user rate limits;
- ``live``: live updates and job notifications;
- ``apps``: interactive apps and the terminal;
- ``ha``: several replicas (Redis, the leader lease);
- ``operations``: the leader's backups, scheduler statistics and usage ingest;
- ``delivery``: notification delivery (``UrlScheme``);
- ``endpoints``: /metrics, Slurm's mail and the Alertmanager receiver;
- ``serving``: listening, trusted proxies, logging.

The groups are plain pydantic models: only ``Settings`` is a ``BaseSettings``, so there
is still one environment prefix, one TOML file, one set of sources and one
``model_config``, and code keeps taking a ``Settings`` (``from hpcportal.config import
Settings``). What spans groups stays on ``Settings`` here: the database URL derived
from the state folder, the values read from ``jwt_secret_file`` and
``database_password_file``, the secret key's path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from hpcportal.config.apps import AppSettings
from hpcportal.config.delivery import DeliverySettings, UrlScheme
from hpcportal.config.disk_alerts import DiskAlertSettings
from hpcportal.config.endpoints import EndpointSettings
from hpcportal.config.files import FileRoot, FileSettings
from hpcportal.config.ha import ReplicaSettings
from hpcportal.config.identity import IdentitySettings
from hpcportal.config.live import LiveSettings
from hpcportal.config.monitoring import MetricSource, MonitoringSettings
from hpcportal.config.operations import OperationsSettings
from hpcportal.config.reports import ReportSettings
from hpcportal.config.runas import RunAsSettings
from hpcportal.config.serving import ServingSettings
from hpcportal.config.slurm import SlurmSettings
from hpcportal.config.storage import StorageSettings
from hpcportal.config.submit import SubmitSettings
from hpcportal.config_sources import named_sources, read_secret_file

__all__ = [
    "DEFAULT_STATE_DIR",
    "AppSettings",
    "DeliverySettings",
    "DiskAlertSettings",
    "EndpointSettings",
    "FileRoot",
    "FileSettings",
    "IdentitySettings",
    "LiveSettings",
    "MetricSource",
    "MonitoringSettings",
    "OperationsSettings",
    "ReplicaSettings",
    "ReportSettings",
    "RunAsSettings",
    "ServingSettings",
    "Settings",
    "SlurmSettings",
    "StorageSettings",
    "SubmitSettings",
    "UrlScheme",
    "get_settings",
]

#: An installed portal's state (the package makes it); used by default when it exists.
#: ``storage.py`` reads it from here at each default, so it may be replaced here.
DEFAULT_STATE_DIR = Path("/var/lib/hpcportal")


# The groups are listed last first: pydantic collects fields walking the bases from
# the base-most, so StorageSettings' fields come first, as in `config sample`, the
# README and the packaged portal.toml.
class Settings(
    ServingSettings,
    EndpointSettings,
    DeliverySettings,
    OperationsSettings,
    ReplicaSettings,
    AppSettings,
    LiveSettings,
    IdentitySettings,
    ReportSettings,
    MonitoringSettings,
    DiskAlertSettings,
    FileSettings,
    SubmitSettings,
    RunAsSettings,
    SlurmSettings,
    StorageSettings,
    BaseSettings,
):
    """Portal configuration; one instance per process, shared through ``get_settings``."""

    model_config = SettingsConfigDict(env_prefix="HPCPORTAL_", extra="forbid")

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        """The database in state_dir unless named; values read from ``*_file``s."""
        if "database_url" not in self.model_fields_set and "state_dir" in self.model_fields_set:
            self.database_url = f"sqlite:///{(self.state_dir / 'hpcportal.db').absolute()}"
        if self.jwt_secret_file is not None:
            if "jwt_secret" in self.model_fields_set:
                raise ValueError("set jwt_secret or jwt_secret_file, not both")
            self.jwt_secret = SecretStr(read_secret_file(self.jwt_secret_file))
        if self.database_password_file is not None:
            if self.database_password is not None:
                raise ValueError("set database_password or database_password_file, not both")
            self.database_password = SecretStr(read_secret_file(self.database_password_file))
        if self.database_password is not None:
            url = make_url(self.database_url).set(
                password=self.database_password.get_secret_value()
            )
            self.database_url = url.render_as_string(hide_password=False)
        return self

    @property
    def secret_key_path(self) -> Path:
        """``secret_key_file``, or its default next to the state (the SQLite file)."""
        if self.secret_key_file is not None:
            return self.secret_key_file
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(str(url.database)).absolute().parent / "secrets" / "portal.key"
        return (self.state_dir / "secrets" / "portal.key").absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return tuple(
            source for _, source in named_sources(settings_cls, init_settings, env_settings)
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
