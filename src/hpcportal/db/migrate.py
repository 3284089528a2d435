"""Run the Alembic migrations from Python, without an ``alembic.ini``.

``hpcportal db upgrade`` and ``hpcportal serve`` call ``upgrade``; the configuration
is built here so the installed package carries everything it needs.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from hpcportal.config import Settings
from hpcportal.db.session import normalise_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Name of the ``Config.attributes`` entry that ``migrations/env.py`` reads the URL from.
#: An attribute rather than ``sqlalchemy.url``: ConfigParser would choke on ``%`` in passwords.
URL_ATTRIBUTE = "hpcportal_database_url"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration pointing at the packaged migrations and the given DB."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes[URL_ATTRIBUTE] = normalise_url(database_url)
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision``; a database already there is left alone."""
    command.upgrade(alembic_config(settings.database_url), revision)


def head_revision() -> str | None:
    """The newest revision the installed code knows about."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
