"""Bounds and character rules for what clients send, shared by routers, pages and models.

Every number a client sends ends up in SQLite (64-bit signed integers), PostgreSQL
(``Integer`` ids are 32-bit), Slurm (32-bit job ids) or a file offset, and every
string in a Slurm argv element, an SQL parameter or a path, where a NUL byte or a
control character is at best an error deep down (an ``OverflowError``, ``embedded
null byte``, PostgreSQL refusing ``\\x00``: a 500) and at worst a forged log line.
So the limits are declared once, here, as ``Annotated`` types: query and path
parameters of the routers (``api/params.py`` re-exports them) and of the pages (which
import no ``api/`` module, so they take them from here), and the fields of request
models (``JobRequest``, ``FileOp``...) use the same ones.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AfterValidator

#: SQLite's INTEGER and a file offset (``off_t``) are 64-bit signed.
INT64_MAX = 2**63 - 1
#: ``Integer`` primary keys are 32-bit signed on PostgreSQL.
DB_ID_MAX = 2**31 - 1
#: Slurm job ids (and array task ids) are 32-bit unsigned.
SLURM_ID_MAX = 2**32 - 1
#: Pages beyond this are empty anyway; (page - 1) * limit stays far inside 64 bits.
PAGE_MAX = 1_000_000
#: The most rows one page of any list holds.
PAGE_SIZE_MAX = 1000

#: Half of a UTF-16 surrogate pair is never text, but JSON's "\ud800" decodes to one,
#: and it cannot be encoded as UTF-8 for an argv, a path or the run-as helper.
_SURROGATES = "\ud800-\udfff"
CONTROL = re.compile(f"[\x00-\x1f\x7f{_SURROGATES}]")
#: Tab, newline and carriage return are text; the other C0 controls and DEL are not.
CONTROL_IN_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{_SURROGATES}]")
#: What no string anywhere in a request may hold, multi-line or not.
NEVER_TEXT = re.compile(f"[\x00{_SURROGATES}]")


def describe(char: str) -> str:
    """How a refusal names a character a person cannot see."""
    if char == "\x00":
        return "a control character (NUL)"
    if "\ud800" <= char <= "\udfff":
        return f"half of a UTF-16 surrogate pair (U+{ord(char):04X}), which is not text"
    return f"a control character (U+{ord(char):04X})"


def refuse_control(value: str) -> str:
    """One line of printable text: no NUL, newline, tab, escape or other control."""
    found = CONTROL.search(value)
    if found:
        raise ValueError(f"contains {describe(found.group())}")
    return value


def refuse_control_in_text(value: str) -> str:
    """Multi-line text: newlines and tabs are fine, NUL and other controls are not."""
    found = CONTROL_IN_TEXT.search(value)
    if found:
        raise ValueError(f"contains {describe(found.group())}")
    return value


#: A name, path, filter or other single-line value that reaches Slurm, SQL or a path.
Line = Annotated[str, AfterValidator(refuse_control)]
#: Multi-line text (a script, a description): newlines and tabs allowed.
Text = Annotated[str, AfterValidator(refuse_control_in_text)]

#: ``page`` of a paged list (1-based).
PageNumber = Annotated[int, Ge(1), Le(PAGE_MAX)]
#: A non-negative position: a byte offset in a file, an entry offset in a listing.
Offset = Annotated[int, Ge(0), Le(INT64_MAX)]
#: A database row id (notifications, templates, API tokens).
DbId = Annotated[int, Ge(1), Le(DB_ID_MAX)]
#: A whole number that must fit SQLite and ``off_t`` (anything not bounded more tightly).
Int64 = Annotated[int, Ge(-INT64_MAX - 1), Le(INT64_MAX)]


#: Nothing the portal stores or Slurm accounts for is older.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def in_utc(value: datetime) -> datetime:
    """Aware and in UTC (naive means UTC), from 1970 to the end of the year 9999.

    ``0001-01-01T00:00+14:00`` is in the year 0 in UTC and ``9999-12-31T23:00-05:00``
    in the year 10000: converting either, as the database layer does, overflows.
    """
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("lies outside the years 1970 to 9999 in UTC") from None
    if moment < EARLIEST:
        raise ValueError("lies before 1970")
    return moment


#: A moment asked about (``since``, ``until``): in UTC, 1970 to 9999.
Moment = Annotated[datetime, AfterValidator(in_utc)]

#: ``limit`` of a paged list (a route may bound it more tightly with ``Query(le=...)``).
PageSize = Annotated[int, Ge(1), Le(PAGE_SIZE_MAX)]
#: A byte count asked for (a chunk of output); the route caps it by its setting.
ByteCount = Annotated[int, Ge(1), Le(INT64_MAX)]
