"""Portable "insert unless present" and "insert or update" for the three databases.

SQLite and PostgreSQL spell both ``INSERT ... ON CONFLICT``; MySQL and MariaDB have
no ``ON CONFLICT`` and spell them differently, so services build these statements
here instead of picking a dialect's ``insert`` themselves:

- *insert unless present* is ``ON CONFLICT (key) DO NOTHING``, and on MariaDB
  ``INSERT IGNORE``. Only ``INSERT IGNORE ... RETURNING`` returns exactly the rows it
  added (``ON DUPLICATE KEY UPDATE ... RETURNING`` returns the existing rows too), and
  callers need that answer (which notifications are new, whether a rate-limit window
  was opened). ``IGNORE`` also turns other row errors into warnings, so the callers
  only use it on rows the portal built itself, within the columns' sizes.
- *insert or update* is ``ON CONFLICT (key) DO UPDATE`` and on MariaDB
  ``ON DUPLICATE KEY UPDATE``, which fires on any unique key: the tables used here have
  one unique key besides an automatic primary key.

``proposed`` in an update is the row the INSERT wanted to write (PostgreSQL's and
SQLite's ``excluded``, MySQL's ``VALUES()``/``inserted``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

#: ``proposed`` -> the SET of an update (column name -> value or expression).
UpdateSet = Callable[[Any], Mapping[str, Any]]


def dialect_of(session: Session) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB's dialect name in SQLAlchemy)."""
    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql", "mysql"):
        raise RuntimeError(f"the portal needs SQLite, PostgreSQL or MariaDB, not {name}")
    return name


def insert_if_absent(
    session: Session,
    model: Any,
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    index_elements: Sequence[str],
) -> Insert:
    """INSERT ``rows`` into ``model``'s table, skipping any whose ``index_elements``
    (a unique key) already exist. Add ``.returning(...)`` to learn which were added."""
    values = rows if isinstance(rows, Mapping) else list(rows)
    name = dialect_of(session)
    if name == "mysql":
        return mysql.insert(model).values(values).prefix_with("IGNORE")
    if name == "postgresql":
        return (
            postgresql.insert(model)
            .values(values)
            .on_conflict_do_nothing(index_elements=list(index_elements))
        )
    return (
        sqlite.insert(model)
        .values(values)
        .on_conflict_do_nothing(index_elements=list(index_elements))
    )


def upsert(
    session: Session,
    model: Any,
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    index_elements: Sequence[str],
    set_: UpdateSet,
) -> Insert:
    """INSERT ``rows``; a row whose unique key ``index_elements`` exists is updated
    with ``set_(proposed)`` instead."""
    values = rows if isinstance(rows, Mapping) else list(rows)
    name = dialect_of(session)
    if name == "mysql":
        my = mysql.insert(model).values(values)
        return my.on_duplicate_key_update(dict(set_(my.inserted)))
    if name == "postgresql":
        pg = postgresql.insert(model).values(values)
        return pg.on_conflict_do_update(
            index_elements=list(index_elements), set_=dict(set_(pg.excluded))
        )
    lite = sqlite.insert(model).values(values)
    return lite.on_conflict_do_update(
        index_elements=list(index_elements), set_=dict(set_(lite.excluded))
    )
