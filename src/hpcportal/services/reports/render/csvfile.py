"""CSV: one file per report, UTF-8 with a byte-order mark so Excel reads Korean right.

Why one file and not a zip of CSVs: a download stays one ``text/csv`` that opens with
a double click and reads with any CSV reader, and reports have few tables. The file is
a run of blocks, each a title row (one cell), then its rows, then one empty row:

1. the report: its title, then ``kind``, scope, period (start, end), previous period
   and generated time as rows of a label and values;
2. every table: its title, a header row, its rows (with the period before, each
   numeric column is followed by its previous value and its change as a fraction);
3. every chart's data: its title, a header (label, then one column per series), rows;
4. the sources: title, a header, one row per source (the table or chart it is for).

Values are machine-readable: numbers as Python writes them (``1234.5``; percent as
a fraction), dates ``YYYY-MM-DD``, datetimes ``YYYY-MM-DD HH:MM:SS`` in UTC, empty
cells empty. A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return gets a leading apostrophe, so a spreadsheet never runs a user-chosen name
(a job name, say) as a formula; everything else round-trips through ``csv.reader``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from hpcportal.services.reports.document import Cell, ReportDocument, Source
from hpcportal.services.reports.render.common import as_utc, grid, label

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_value(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render_csv(document: ReportDocument) -> bytes:
    lang = document.language
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def block(title: str, rows: list[list[Cell]]) -> None:
        writer.writerow([csv_value(title)])
        writer.writerows([csv_value(v) for v in row] for row in rows)
        writer.writerow([])

    facts: list[list[Cell]] = [
        ["kind", document.kind],
        [label(lang, "scope"), document.scope],
        [label(lang, "period"), document.period.start, document.period.end],
    ]
    if document.previous_period is not None:
        prev = document.previous_period
        facts.append([label(lang, "previous_period"), prev.start, prev.end])
    facts.append([label(lang, "generated"), document.generated_at])
    block(document.title, facts)

    provenance: list[tuple[str, Source | None]] = [(document.title, s) for s in document.sources]
    for section in document.sections:
        for table in section.tables:
            flat = grid(table, lang)
            block(table.title, [[c.title for c in flat.columns], *flat.rows])
            provenance.append((table.title, table.source))
        for chart in section.charts:
            header: list[Cell] = [label(lang, "label"), *[s.name for s in chart.series]]
            rows: list[list[Cell]] = [
                [text, *[s.values[i] if i < len(s.values) else None for s in chart.series]]
                for i, text in enumerate(chart.labels)
            ]
            block(chart.title, [header, *rows])
            provenance.append((chart.title, chart.source))

    keys = ("for", "name", "start", "end", "slurm", "detail")
    heads: list[Cell] = [label(lang, k) for k in keys]
    block(
        label(lang, "sources"),
        [heads]
        + [
            [where, s.name, s.window.start, s.window.end, s.slurm_release, s.detail]
            for where, s in provenance
            if s is not None
        ],
    )
    return ("\ufeff" + out.getvalue()).encode("utf-8")
