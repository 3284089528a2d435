"""Declarative base shared by every model.

The naming convention gives constraints and indexes stable, predictable names, so
Alembic migrations can refer to them (and drop them) identically on SQLite,
PostgreSQL and MariaDB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import TypeCompiler
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Parent of all tables; carries the shared metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no time zone type and hands back naive values; PostgreSQL's
    ``timestamptz`` hands back aware ones. Normalising here means comparisons in
    Python never mix the two, and naive values are refused before they are stored.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@compiles(DateTime, "mysql")
def _mysql_datetime_microseconds(type_: DateTime, compiler: TypeCompiler, **kw: Any) -> str:
    """MySQL's and MariaDB's ``DATETIME`` keeps whole seconds unless asked for more; the
    portal orders and compares timestamps (notifications, rate-limit windows, leases)
    to the microsecond as SQLite and PostgreSQL keep them, so every timestamp column,
    in the models and in every migration alike, is ``DATETIME(6)`` there. The values
    are UTC (``UtcDateTime``): ``DATETIME`` rather than ``TIMESTAMP``, which would
    convert with the session's time zone and ends in 2038."""
    return "DATETIME(6)"
