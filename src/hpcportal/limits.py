"""Bounds and character rules for what clients send, shared by routers and request models.

Every number a client sends ends up in SQLite (64-bit signed integers), PostgreSQL
(``Integer`` ids are 32-bit), Slurm (32-bit job ids) or a file offset, and every
string in a Slurm argv element, an SQL parameter or a path, where a NUL byte or a
control character is at best an error deep down (an ``OverflowError``, ``embedded
null byte``, PostgreSQL refusing ``\\x00``: a 500) and at worst a forged log line.
So the limits are declared once, here, as ``Annotated`` types: query and path
parameters of the routers (``api/params.py`` re-exports them) and the fields of
request models (``JobRequest``, ``FileOp``...) use the same ones.
"""

from __future__ import annotations

import re
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

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Tab, newline and carriage return are text; the other C0 controls and DEL are not.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def describe(char: str) -> str:
    """``NUL`` or ``U+001B``: how a refusal names the character a person cannot see."""
    return "NUL" if char == "\x00" else f"U+{ord(char):04X}"


def refuse_control(value: str) -> str:
    """One line of printable text: no NUL, newline, tab, escape or other control."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"contains a control character ({describe(found.group())})")
    return value


def refuse_control_in_text(value: str) -> str:
    """Multi-line text: newlines and tabs are fine, NUL and other controls are not."""
    found = _CONTROL_IN_TEXT.search(value)
    if found:
        raise ValueError(f"contains a control character ({describe(found.group())})")
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


#: ``limit`` of a paged list (a route may bound it more tightly with ``Query(le=...)``).
PageSize = Annotated[int, Ge(1), Le(PAGE_SIZE_MAX)]
#: A byte count asked for (a chunk of output); the route caps it by its setting.
ByteCount = Annotated[int, Ge(1), Le(INT64_MAX)]
