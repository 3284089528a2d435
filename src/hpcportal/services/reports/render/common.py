"""What every format shares: the renderers' own few words, numbers and dates written
the way the document's language writes them, and the change against the period before.

The document's text is already translated; only the labels a renderer adds itself
(period, sources, change) live here, one table per language. ``Language`` is a closed
literal in the contract, so a new language fails type checking here until it has its
words, and the renderers need no gettext catalog of the web pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent

from hpcportal.services.reports.document import (
    Cell,
    Column,
    ColumnType,
    Language,
    Period,
    Source,
    Table,
)

LABELS: dict[Language, dict[str, str]] = {
    "en": {
        "scope": "Scope",
        "period": "Period",
        "previous_period": "Previous period",
        "generated": "Generated",
        "sources": "Sources",
        "source": "Source",
        "note": "Note",
        "previous": "previous period",
        "change": "change",
        "new": "new",
        "page": "Page",
        "sheet": "Sheet",
        "name": "Name",
        "start": "From",
        "end": "Until",
        "slurm": "Slurm release",
        "detail": "Detail",
        "for": "For",
        "report": "Report",
        "label": "Label",
        "utc": "UTC",
    },
    "ko": {
        "scope": "범위",
        "period": "기간",
        "previous_period": "이전 기간",
        "generated": "생성 시각",
        "sources": "출처",
        "source": "출처",
        "note": "참고",
        "previous": "이전 기간",
        "change": "변화",
        "new": "신규",
        "page": "쪽",
        "sheet": "시트",
        "name": "이름",
        "start": "시작",
        "end": "끝",
        "slurm": "Slurm 릴리스",
        "detail": "세부",
        "for": "대상",
        "report": "보고서",
        "label": "항목",
        "utc": "UTC",
    },
}

#: Column types whose values are numbers (kept numeric in XLSX and CSV, right-aligned
#: and compared with the previous period in the PDF).
NUMERIC: frozenset[ColumnType] = frozenset({"integer", "number", "percent", "hours", "seconds"})

#: Between the ends of a period (an en dash, spaced).
DASH = " \u2013 "

_NUMBER_PATTERNS: dict[ColumnType, str] = {
    "integer": "#,##0",
    "number": "#,##0.##",
    "hours": "#,##0.0",
}


def label(language: Language, key: str) -> str:
    return LABELS[language][key]


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC (a naive one is taken as UTC, as the contract says)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def duration(seconds: float) -> str:
    """``h:mm:ss`` with hours past 24 (wait and wall times read best this way)."""
    sign, whole = ("-" if seconds < 0 else ""), round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_cell(value: Cell, kind: ColumnType, language: Language) -> str:
    """One cell as text for a person (PDF, chart labels): grouped digits and dates in
    the language's own way; an empty cell is an empty string."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_datetime(as_utc(value), "yyyy-MM-dd HH:mm", tzinfo=UTC, locale=language)
    if isinstance(value, date):
        return format_date(value, "medium", locale=language)
    if isinstance(value, str | bool):
        return str(value)
    if kind == "percent":
        return format_percent(value, "#,##0.0%", locale=language)
    if kind == "seconds":
        return duration(value)
    pattern = _NUMBER_PATTERNS.get(kind, "#,##0.##")
    return format_decimal(value, pattern, locale=language)


def format_number(value: float, language: Language) -> str:
    """An axis label: grouped, at most two decimals."""
    return format_decimal(value, "#,##0.##", locale=language)


def format_when(value: datetime, language: Language) -> str:
    """A moment for the title page, in UTC and said so."""
    return format_datetime(as_utc(value), "medium", tzinfo=UTC, locale=language) + " UTC"


def format_period(period: Period, language: Language) -> str:
    """A half-open window as a person reads it: whole UTC days as first and last day
    (``[Nov 1, Dec 1)`` is Nov 1 to Nov 30), anything else as two moments."""
    start, end = as_utc(period.start), as_utc(period.end)
    if start.time() == time(0) and end.time() == time(0) and end > start:
        first = format_date(start.date(), "medium", locale=language)
        last = format_date((end - timedelta(days=1)).date(), "medium", locale=language)
        return first if first == last else f"{first}{DASH}{last}"
    return f"{format_when(start, language)}{DASH}{format_when(end, language)}"


def source_line(source: Source, language: Language) -> str:
    """``Source: usage store · Nov 1 to Nov 30, 2026 · Slurm 24.11 · detail``."""
    parts = [source.name, format_period(source.window, language)]
    if source.slurm_release:
        parts.append(f"Slurm {source.slurm_release}")
    if source.detail:
        parts.append(source.detail)
    return f"{label(language, 'source')}: " + " · ".join(parts)


# The period before -----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A numeric cell against the same row of the period before: ``previous`` is its
    value then (None: the row is new or the cell was empty), ``ratio`` the relative
    change, or for percent columns the difference in points (both as fractions)."""

    previous: int | float | None
    ratio: float | None
    points: bool


def key_indexes(table: Table) -> list[int]:
    """The columns that name a row: ``key_columns``, or else every non-numeric one."""
    keys = [c.key for c in table.columns]
    if table.key_columns:
        return [keys.index(k) for k in table.key_columns if k in keys]
    return [i for i, c in enumerate(table.columns) if c.type not in NUMERIC]


def changes(table: Table) -> list[list[Change | None]] | None:
    """Per row and column, the change against ``previous`` (None for non-numeric
    columns); None when the table has no previous rows."""
    if table.previous is None:
        return None
    keys = key_indexes(table)
    before = {tuple(row[i] for i in keys): row for row in table.previous}
    out: list[list[Change | None]] = []
    for row in table.rows:
        old = before.get(tuple(row[i] for i in keys))
        cells: list[Change | None] = []
        for i, column in enumerate(table.columns):
            if column.type not in NUMERIC or i in keys:
                cells.append(None)
                continue
            cells.append(_change(row[i], None if old is None else old[i], column.type))
        out.append(cells)
    return out


def _change(now: Cell, then: Cell, kind: ColumnType) -> Change:
    points = kind == "percent"
    if not isinstance(then, int | float) or isinstance(then, bool):
        return Change(None, None, points)
    if not isinstance(now, int | float) or isinstance(now, bool):
        return Change(then, None, points)
    if points:
        return Change(then, float(now) - float(then), True)
    ratio = (float(now) - float(then)) / abs(float(then)) if then else None
    return Change(then, ratio, False)


def format_change(change: Change, language: Language) -> str:
    """``▲ 12.5%`` / ``▼ 3.0 pp`` (``%p`` in Korean) / ``new``; empty when unknown."""
    if change.previous is None:
        return label(language, "new")
    if change.ratio is None:
        return ""
    arrow = "▲" if change.ratio > 0 else "▼" if change.ratio < 0 else "="
    if change.points:
        unit = "%p" if language == "ko" else " pp"
        points = format_decimal(abs(change.ratio) * 100, "#,##0.0", locale=language)
        return f"{arrow} {points}{unit}"
    return f"{arrow} {format_percent(abs(change.ratio), '#,##0.0%', locale=language)}"


@dataclass(frozen=True)
class Grid:
    """A table flattened for the spreadsheet formats: with previous rows, every numeric
    column is followed by its previous value and its change (a fraction), so both
    stay typed numbers; ``change_columns`` are the indexes of those change columns."""

    columns: list[Column]
    rows: list[list[Cell]]
    change_columns: frozenset[int]


def grid(table: Table, language: Language) -> Grid:
    found = changes(table)
    if found is None:
        return Grid(list(table.columns), [list(r) for r in table.rows], frozenset())
    keys = set(key_indexes(table))
    columns: list[Column] = []
    change_columns: set[int] = set()
    widened = [i for i, c in enumerate(table.columns) if c.type in NUMERIC and i not in keys]
    for i, column in enumerate(table.columns):
        columns.append(column)
        if i in widened:
            columns.append(
                Column(
                    key=f"{column.key}_previous",
                    title=f"{column.title} ({label(language, 'previous')})",
                    type=column.type,
                )
            )
            change_columns.add(len(columns))
            columns.append(
                Column(
                    key=f"{column.key}_change",
                    title=f"{column.title} ({label(language, 'change')})",
                    type="percent",
                )
            )
    rows: list[list[Cell]] = []
    for row, row_changes in zip(table.rows, found, strict=True):
        out: list[Cell] = []
        for i, value in enumerate(row):
            out.append(value)
            if i in widened:
                change = row_changes[i]
                out.append(None if change is None else change.previous)
                ratio = None if change is None else change.ratio
                out.append(None if ratio is None else round(ratio, 6))
        rows.append(out)
    return Grid(columns, rows, frozenset(change_columns))
