"""Storage: the state folder and the database.

``state_dir`` holds the SQLite database (``hpcportal.db``) and ``secrets/`` (the secret
key, the stored JWT key) by default; ``database_url`` names another database
(PostgreSQL or MariaDB for several replicas) and ``database_password`` its password,
kept out of the URL. Read by the database layer (``db/session.py``, ``db/migrate.py``),
``services/signing_key.py``, backups (``services/operations/backup.py``) and
``hpcportal check`` / ``cluster status`` (``services/operations/``). ``Settings``
(``hpcportal.config``) derives the SQLite URL from ``state_dir`` and puts the password
into the URL, as those span groups.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


def _default_state_dir() -> Path:
    """``/var/lib/hpcportal`` on an installed portal, else the working directory as
    before (a checkout, the demo), so nothing that ran from a folder moves.

    ``DEFAULT_STATE_DIR`` is looked up on ``hpcportal.config``, where it is defined,
    at each call: replacing it there (the tests do) is seen here."""
    from hpcportal import config  # the package imports this module; read at call time

    installed = config.DEFAULT_STATE_DIR
    return installed if installed.is_dir() else Path(".")


def _default_database_url() -> str:
    """An SQLite file in the default state folder (``./hpcportal.db`` as before)."""
    folder = _default_state_dir()
    if folder == Path("."):
        return "sqlite:///./hpcportal.db"
    return f"sqlite:///{folder / 'hpcportal.db'}"


class StorageSettings(BaseModel):
    """Where the portal keeps its state and which database it uses."""

    # Storage
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where the portal keeps its state: the SQLite database "
        "(hpcportal.db) and secrets/ (portal.key, jwt_secret) unless set otherwise. "
        "Default: /var/lib/hpcportal when it exists (an installed portal), else the "
        "working directory.",
    )
    database_url: str = Field(
        default_factory=_default_database_url,
        description="SQLAlchemy URL: SQLite file in state_dir by default; "
        "postgresql+psycopg://... or mysql+pymysql://... (MariaDB) for several replicas.",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="Password put into database_url, so the URL in portal.toml holds "
        "none: best from a secret file (secrets/database_password, a systemd credential) "
        "or database_password_file.",
    )
    database_password_file: Path | None = Field(
        default=None, description="A file holding database_password (first line)."
    )
