"""The one place where configuration is read.

Values come, highest priority first, from keyword arguments (tests), ``HPCPORTAL_*``
environment variables, the TOML file named by ``HPCPORTAL_CONFIG``, and the defaults
below. Every key is documented in ``docs/architecture.md``.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Portal configuration; one instance per process, shared through ``get_settings``."""

    model_config = SettingsConfigDict(env_prefix="HPCPORTAL_", extra="forbid")

    # Storage
    database_url: str = Field(
        default="sqlite:///./hpcportal.db",
        description="SQLAlchemy URL: SQLite file by default, postgresql+psycopg://... for HA.",
    )

    # Slurm boundary
    slurm_conf: Path | None = Field(
        default=None,
        description="SLURM_CONF for every Slurm command; unset means Slurm's own default.",
    )
    slurm_bin_dir: Path | None = Field(
        default=None, description="Directory of squeue/sinfo/...; unset means PATH."
    )
    slurm_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before a command is killed."
    )
    refresh_interval: float = Field(
        default=10.0, gt=0, description="Seconds between two snapshot refreshes."
    )
    stale_after: float = Field(
        default=35.0,
        gt=0,
        description="A snapshot older than this many seconds is reported stale and /ready fails.",
    )
    accounting_cache_seconds: float = Field(
        default=15.0,
        ge=0,
        description="How long an identical sacct/sshare/sacctmgr answer is reused.",
    )

    # Acting as the user (hpcportal.runas)
    runas_method: Literal["auto", "runuser", "sudo"] = Field(
        default="auto",
        description="How to become a user: runuser (portal runs as root), sudo (service "
        "account with the documented sudoers rule), auto = runuser as root, else sudo.",
    )
    runas_helper: Path = Field(
        default=Path("/usr/local/libexec/hpcportal-runas"),
        description="The installed helper that sudo runs as the user (hpcportal runas install).",
    )

    # Job submission
    upload_root: str = Field(
        default="{home}/hpcportal/uploads",
        description="Where uploaded input files go, per user; {home} and {user} are replaced.",
    )
    submission_root: str = Field(
        default="{home}/hpcportal/jobs",
        description="Where per-submission files (the script run inside Apptainer) go.",
    )
    upload_max_bytes: int = Field(default=1024**3, gt=0, description="Largest uploaded file.")
    upload_max_files: int = Field(default=20, gt=0, description="Files per upload request.")
    output_chunk_bytes: int = Field(
        default=256 * 1024, gt=0, description="Most bytes of job output returned per request."
    )
    apptainer_image_dirs: list[Path] = Field(
        default_factory=list, description="Directories scanned for .sif images."
    )
    apptainer_command: str = Field(
        default="apptainer", description="The apptainer program jobs run (name or path)."
    )
    apptainer_binds: list[str] = Field(
        default_factory=list, description="--bind values added to every Apptainer job."
    )

    # Identity
    pam_service: str = Field(
        default="hpcportal", description="PAM service used to check passwords."
    )
    admin_group: str = Field(
        default="hpc-admins", description="Unix group whose members are admins."
    )
    jwt_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(48)),
        description="HS256 signing key. Set it explicitly when running several replicas.",
    )
    jwt_algorithm: Literal["HS256"] = "HS256"
    token_ttl_seconds: int = Field(default=3600, gt=0, le=7 * 24 * 3600)
    cookie_name: str = "hpcportal_session"
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set true behind HTTPS)."
    )
    login_max_failures: int = Field(
        default=5, gt=0, description="Failed logins per user (and 4x per address) per window."
    )
    login_window_seconds: int = Field(default=300, gt=0)
    min_uid: int = Field(default=1000, ge=1, description="Lowest UID allowed to log in.")
    login_failure_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=10,
        description="Least time a failed login takes, so that refusing an unknown user "
        "without asking PAM is as slow as PAM's own failure delay.",
    )
    revocation_sync_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How often each replica re-reads logged-out tokens from the database.",
    )
    principal_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="How long a user's groups (hence the admin role) are reused; 0 = not at all.",
    )
    api_token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a checked API token is reused without a query (revocations "
        "in this process apply at once, in other replicas within this time); 0 = not at all.",
    )

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)
    devcluster_dir: Path = Field(
        default=Path(".devcluster"), description="Where `hpcportal dev-cluster` keeps everything."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("HPCPORTAL_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
