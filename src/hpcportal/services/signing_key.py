"""The JWT signing key when none is configured: kept in the state folder, not made up
per process.

A key made up at each start (``Settings``' default) logs everyone out on every restart
and is refused by every other replica. A single server without a configured key
therefore keeps the first one it made in ``secrets/jwt_secret`` beside
``portal.key`` (0600 in a 0700 folder, written once: of two processes starting together
exactly one key wins), and reads it at each start. That is the safe default because
the folder already holds the sealing key of the same trust: whoever reads one reads
the other. Several replicas need one key they all share, which only the administrator
can give (a secret file, ``jwt_secret_file``, a systemd credential or
``HPCPORTAL_JWT_SECRET``): ``serve`` says so loudly when it sees a server database or
Redis without one.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from hpcportal.config import Settings
from hpcportal.services.secret_box import (
    check_private_file,
    private_folder,
    write_private_once,
)

log = logging.getLogger(__name__)

#: The stored key's file name, beside ``portal.key``.
FILE_NAME = "jwt_secret"


def stored_key_path(settings: Settings) -> Path:
    """Where an unconfigured portal keeps its signing key."""
    return settings.secret_key_path.parent / FILE_NAME


def several_replicas_likely(settings: Settings) -> bool:
    """Redis shared, or a server database: the setups meant for several replicas."""
    return settings.replicated or make_url(settings.database_url).get_backend_name() != "sqlite"


def shared_key_warning(settings: Settings) -> str | None:
    """What to tell the administrator when replicas would not share a signing key."""
    if settings.jwt_secret_configured or not several_replicas_likely(settings):
        return None
    return (
        "jwt_secret is not configured, but this portal uses a server database or Redis, "
        "as several replicas do. Each replica must sign logins with the same key, or a "
        "login made on one is refused by the others: put one random value (e.g. "
        "`openssl rand -base64 48`) in /etc/hpcportal/secrets/jwt_secret on every "
        "replica (mode 0600, owned by the portal's account), or give it as a systemd "
        f"credential or jwt_secret_file. Until then this replica uses {stored_key_path(settings)}."
    )


def with_signing_key(settings: Settings) -> Settings:
    """``settings`` with the configured key, else with the stored one (made once)."""
    if settings.jwt_secret_configured:
        return settings
    path = stored_key_path(settings)
    private_folder(path.parent)
    if write_private_once(path, secrets.token_urlsafe(48).encode("ascii")):
        log.info("made a signing key for logins in %s (no jwt_secret configured)", path)
    check_private_file(path)
    key = path.read_text(encoding="ascii").strip()
    return settings.model_copy(update={"jwt_secret": SecretStr(key)})
