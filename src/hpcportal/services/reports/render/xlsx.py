"""XLSX: one sheet per table, one per chart (its data and a native Excel chart), and
a last sheet with the report's facts and every table's and chart's source.

Why XlsxWriter: the workbook is only ever written, never read back, and XlsxWriter
does exactly that with no dependencies, typed cells and number formats, native charts
and less memory and time than openpyxl for the same sheet (openpyxl, a reader and
writer, is used by the tests to read the files back).

Every value keeps its type: numbers are numbers with a format (hours ``#,##0.0``,
percent ``0.0%`` on fractions), dates and datetimes are real Excel dates (UTC, the
zone said in the facts), text is always written as text, so a user name such as
``=HYPERLINK(…)`` never becomes a formula. Headers are frozen; widths follow content.
"""

from __future__ import annotations

import io
import re
import unicodedata
from datetime import date, datetime
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]
from xlsxwriter.format import Format  # type: ignore[import-untyped]
from xlsxwriter.worksheet import Worksheet  # type: ignore[import-untyped]

from hpcportal.services.reports.document import (
    Cell,
    Chart,
    Column,
    ColumnType,
    ReportDocument,
    Source,
)
from hpcportal.services.reports.render.common import (
    as_utc,
    format_period,
    format_when,
    grid,
    label,
)

NUMBER_FORMATS: dict[ColumnType, str] = {
    "integer": "#,##0",
    "number": "#,##0.##",
    "hours": "#,##0.0",
    "percent": "0.0%",
    "seconds": "#,##0",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm",
}
CHANGE_FORMAT = "+0.0%;-0.0%;0.0%"
#: Rows measured to size a column; the rest take the same width.
MEASURED_ROWS = 500
MAX_WIDTH = 60
#: Rows and columns of one Excel sheet (XlsxWriter silently drops cells past them).
MAX_ROWS, MAX_COLUMNS = 1_048_576, 16_384
_INVALID = re.compile(r"[\[\]:*?/\\]")


def sheet_name(title: str, taken: set[str]) -> str:
    """A valid, unique sheet name: no ``[]:*?/\\``, no leading or trailing apostrophe,
    at most 31 characters, not Excel's reserved ``History``, unique without regard
    to case (as Excel compares them); ``(2)``, ``(3)``… make it unique."""
    base = _INVALID.sub(" ", title).strip().strip("'").strip() or "Sheet"
    if base.casefold() == "history":
        base = f"{base} 1"
    name, n = base[:31], 1
    while name.casefold() in taken:
        n += 1
        suffix = f" ({n})"
        name = base[: 31 - len(suffix)].rstrip() + suffix
    taken.add(name.casefold())
    return name


def display_width(text: str) -> int:
    """Columns a text takes in a spreadsheet: wide (CJK) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def excel_value(value: Cell) -> Any:
    """Datetimes as naive UTC (Excel has no zones; the facts sheet says UTC)."""
    if isinstance(value, datetime):
        return as_utc(value).replace(tzinfo=None)
    return value


class _Book:
    def __init__(self, document: ReportDocument, out: io.BytesIO) -> None:
        self.document, self.lang = document, document.language
        self.book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_numbers": False})
        self.book.set_properties(
            {"title": document.title, "subject": document.scope, "author": "hpcportal"}
        )
        self.taken: set[str] = set()
        self.formats: dict[str, Format] = {}
        self.header = self.book.add_format({"bold": True, "bg_color": "#E8EEF5", "bottom": 1})
        self.header_right = self.book.add_format(
            {"bold": True, "bg_color": "#E8EEF5", "bottom": 1, "align": "right"}
        )
        self.bold = self.book.add_format({"bold": True})
        self.title = self.book.add_format({"bold": True, "font_size": 14})
        #: (sheet, title, source, note) of every table and chart, for the Sources sheet.
        self.provenance: list[tuple[str, str, Source | None, str | None]] = []

    def fmt(self, pattern: str) -> Format:
        if pattern not in self.formats:
            self.formats[pattern] = self.book.add_format({"num_format": pattern})
        return self.formats[pattern]

    def cell_format(self, kind: ColumnType) -> Format | None:
        pattern = NUMBER_FORMATS.get(kind)
        return None if pattern is None else self.fmt(pattern)

    def write(self, sheet: Worksheet, row: int, col: int, value: Cell, kind: ColumnType) -> None:
        if value is None:
            return
        if isinstance(value, str):
            sheet.write_string(row, col, value)
        elif isinstance(value, datetime | date):
            sheet.write_datetime(row, col, excel_value(value), self.cell_format(kind))
        elif isinstance(value, bool):
            sheet.write_boolean(row, col, value)
        else:
            sheet.write_number(row, col, value, self.cell_format(kind))

    def table_sheet(
        self, title: str, columns: list[Column], rows: list[list[Cell]], changes: frozenset[int]
    ) -> tuple[str, Worksheet]:
        if len(rows) + 1 > MAX_ROWS or len(columns) > MAX_COLUMNS:
            raise ValueError(
                f"The table {title!r} has {len(rows):,} rows and {len(columns)} columns, more "
                f"than an Excel sheet holds ({MAX_ROWS - 1:,} rows); choose a shorter period, "
                "a coarser time step or fewer dimensions."
            )
        name = sheet_name(title, self.taken)
        sheet = self.book.add_worksheet(name)
        numeric = {"integer", "number", "percent", "hours", "seconds"}
        for c, column in enumerate(columns):
            sheet.write_string(
                0, c, column.title, self.header_right if column.type in numeric else self.header
            )
        for r, row in enumerate(rows, start=1):
            for c, (value, column) in enumerate(zip(row, columns, strict=True)):
                if c in changes and isinstance(value, int | float):
                    sheet.write_number(r, c, value, self.fmt(CHANGE_FORMAT))
                else:
                    self.write(sheet, r, c, value, column.type)
        sheet.freeze_panes(1, 0)
        if rows:
            sheet.autofilter(0, 0, len(rows), len(columns) - 1)
        for c, column in enumerate(columns):
            sheet.set_column(c, c, self.width(column, [row[c] for row in rows[:MEASURED_ROWS]]))
        return name, sheet

    def width(self, column: Column, values: list[Cell]) -> float:
        widest = display_width(column.title)
        for value in values:
            if value is None:
                continue
            if isinstance(value, datetime):
                size = 16
            elif isinstance(value, date):
                size = 10
            elif isinstance(value, str):
                size = display_width(value)
            else:
                size = len(f"{value:,.2f}") if isinstance(value, float) else len(f"{value:,}")
            widest = max(widest, size)
        return min(MAX_WIDTH, widest + 2)

    def chart_sheet(self, chart: Chart) -> None:
        columns = [Column(key="label", title=label(self.lang, "label"), type="text")]
        columns += [
            Column(key=f"s{i}", title=s.name, type="number") for i, s in enumerate(chart.series)
        ]
        rows: list[list[Cell]] = [
            [text, *[s.values[i] if i < len(s.values) else None for s in chart.series]]
            for i, text in enumerate(chart.labels)
        ]
        name, sheet = self.table_sheet(chart.title, columns, rows, frozenset())
        self.provenance.append((name, chart.title, chart.source, None))
        if not rows or not chart.series:
            return
        native = self.book.add_chart({"type": "column" if chart.kind == "bar" else "line"})
        assert native is not None
        for i in range(1, len(chart.series) + 1):
            native.add_series(
                {
                    "name": [name, 0, i],
                    "categories": [name, 1, 0, len(rows), 0],
                    "values": [name, 1, i, len(rows), i],
                }
            )
        native.set_title({"name": chart.title})
        if chart.unit:
            native.set_y_axis({"name": chart.unit})
        native.set_size({"width": 720, "height": 360})
        sheet.insert_chart(1, len(columns) + 1, native)

    def sources_sheet(self) -> None:
        doc, lang = self.document, self.lang
        sheet = self.book.add_worksheet(sheet_name(label(lang, "sources"), self.taken))
        sheet.write_string(0, 0, doc.title, self.title)
        facts = [
            (label(lang, "scope"), doc.scope),
            (label(lang, "period"), format_period(doc.period, lang)),
        ]
        if doc.previous_period is not None:
            facts.append((label(lang, "previous_period"), format_period(doc.previous_period, lang)))
        facts.append((label(lang, "generated"), format_when(doc.generated_at, lang)))
        for r, (key, value) in enumerate(facts, start=1):
            sheet.write_string(r, 0, key, self.bold)
            sheet.write_string(r, 1, value)
        top = len(facts) + 2
        heads = ["sheet", "name", "start", "end", "slurm", "detail", "note"]
        for c, key in enumerate(heads):
            sheet.write_string(top, c, label(lang, key), self.header)
        entries: list[tuple[str, str, Source | None, str | None]] = [
            (label(lang, "report"), doc.title, s, None) for s in doc.sources
        ]
        entries += self.provenance
        stamp = self.fmt(NUMBER_FORMATS["datetime"])
        for r, (where, _title, source, note) in enumerate(entries, start=top + 1):
            sheet.write_string(r, 0, where)
            if source is not None:
                sheet.write_string(r, 1, source.name)
                sheet.write_datetime(r, 2, excel_value(source.window.start), stamp)
                sheet.write_datetime(r, 3, excel_value(source.window.end), stamp)
                if source.slurm_release:
                    sheet.write_string(r, 4, source.slurm_release)
                if source.detail:
                    sheet.write_string(r, 5, source.detail)
            if note:
                sheet.write_string(r, 6, note)
        widths = [24, 24, 17, 17, 14, 40, 40]
        for c, w in enumerate(widths):
            sheet.set_column(c, c, w)
        sheet.set_column(0, 0, max(24, *(display_width(k) + 2 for k, _ in facts)))


def render_xlsx(document: ReportDocument) -> bytes:
    out = io.BytesIO()
    book = _Book(document, out)
    for section in document.sections:
        for table in section.tables:
            flat = grid(table, document.language)
            name, _ = book.table_sheet(table.title, flat.columns, flat.rows, flat.change_columns)
            book.provenance.append((name, table.title, table.source, table.note))
        for chart in section.charts:
            book.chart_sheet(chart)
    book.sources_sheet()
    book.book.close()
    return out.getvalue()
