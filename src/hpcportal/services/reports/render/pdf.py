"""PDF: a title page, then each section's text, tables and charts, with ReportLab.

Why ReportLab: it is a drawing library (C speed-ups in its wheel) that needs no browser,
cairo or pango on the replica, draws charts itself (``reportlab.graphics``, no
matplotlib) and embeds TrueType fonts as subsets: only the glyphs a report uses, in
pieces of at most 256 glyphs named ``ABCDEF+NanumGothic`` with a ToUnicode map, so a
Korean report stays small and its text can be searched and copied.

The font (``reports_font_path``; Debian's fonts-nanum NanumGothic) must cover Korean;
a ``…Bold.ttf`` beside it serves headings. A missing font is an operator's problem
and is said so (``Misconfigured``), never papered over with a font without Hangul.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    LongTable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from hpcportal.errors import Misconfigured
from hpcportal.services.reports.document import (
    Chart,
    Language,
    ReportDocument,
    Section,
    Source,
)
from hpcportal.services.reports.document import (
    Table as DocTable,
)
from hpcportal.services.reports.render.common import (
    NUMERIC,
    changes,
    format_cell,
    format_change,
    format_number,
    format_period,
    format_when,
    label,
    source_line,
)

DEFAULT_FONT_PATH = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
MARGIN = 18 * mm
#: The portrait page's text width; a document whose widest table needs more is turned
#: to landscape (``page_for``).
WIDTH = A4[0] - 2 * MARGIN
#: Rows whose widths are measured to size a table's columns (the rest wrap or fit).
MEASURED_ROWS = 300
BODY, SMALL, TABLE, NOTE = 10.0, 7.5, 8.0, 6.5
#: A table cell's left and right padding together (ReportLab's default, 6 + 6).
PADDING = 12
INK, GREY, RULE = colors.HexColor("#1f2933"), colors.HexColor("#5f6b7a"), colors.HexColor("#c9d1da")
HEADER_FILL, STRIPE = colors.HexColor("#e8eef5"), colors.HexColor("#f6f8fa")
PALETTE = [
    colors.HexColor(c) for c in ("#2f6fb0", "#e07b29", "#3a9a5b", "#b8434d", "#7b5aa6", "#8c6d3f")
]


@dataclass(frozen=True)
class Fonts:
    regular: str
    bold: str


_registered: dict[Path, Fonts] = {}
_lock = threading.Lock()
#: One PDF at a time per process: ReportLab keeps each font's subsets in the font
#: object, shared by every document, and rendering is CPU work under the GIL anyway.
_building = threading.Lock()


def fonts(path: Path) -> Fonts:
    """Register the TrueType font at ``path`` (and a Bold beside it) once per process.

    ReportLab's registry is global, so names are per file and registration is locked
    (reports render in worker threads)."""
    with _lock:
        if path in _registered:
            return _registered[path]
        if not path.is_file():
            raise Misconfigured(
                f"The PDF report font {path} does not exist (setting reports_font_path). "
                "Install Debian's fonts-nanum, or point reports_font_path to a TrueType "
                "font with Korean glyphs."
            )
        number = len(_registered)
        regular = f"Report{number}-{path.stem}"
        try:
            pdfmetrics.registerFont(TTFont(regular, str(path)))
        except (TTFError, OSError) as exc:
            raise Misconfigured(
                f"The PDF report font {path} (setting reports_font_path) cannot be used: {exc}"
            ) from exc
        bold = regular
        bold_path = path.with_name(f"{path.stem}Bold{path.suffix}")
        if bold_path.is_file():
            bold = f"Report{number}-{bold_path.stem}"
            try:
                pdfmetrics.registerFont(TTFont(bold, str(bold_path)))
            except (TTFError, OSError):
                bold = regular
        _registered[path] = Fonts(regular, bold)
        return _registered[path]


@dataclass(frozen=True)
class Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    subheading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    cell: ParagraphStyle
    cell_right: ParagraphStyle
    header: ParagraphStyle
    header_right: ParagraphStyle


def styles(f: Fonts) -> Styles:
    def style(name: str, font: str, size: float, **kw: Any) -> ParagraphStyle:
        kw.setdefault("textColor", INK)
        return ParagraphStyle(
            name, fontName=font, bulletFontName=font, fontSize=size, leading=size * 1.35, **kw
        )

    return Styles(
        title=style("title", f.bold, 22, spaceAfter=10 * mm),
        heading=style("heading", f.bold, 15, spaceBefore=4 * mm, spaceAfter=3 * mm),
        subheading=style("subheading", f.bold, 11, spaceBefore=3 * mm, spaceAfter=2 * mm),
        body=style("body", f.regular, BODY, spaceAfter=2 * mm),
        small=style("small", f.regular, SMALL, textColor=GREY, spaceBefore=1 * mm),
        cell=style("cell", f.regular, TABLE),
        cell_right=style("cell_right", f.regular, TABLE, alignment=TA_RIGHT),
        header=style("header", f.bold, TABLE),
        header_right=style("header_right", f.bold, TABLE, alignment=TA_RIGHT),
    )


def render_pdf(document: ReportDocument, font_path: Path = DEFAULT_FONT_PATH) -> bytes:
    f = fonts(font_path)
    s = styles(f)
    lang = document.language
    pagesize = page_for(document, s)
    width = pagesize[0] - 2 * MARGIN
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=pagesize,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 4 * mm,
        title=document.title,
        subject=document.scope,
        author="hpcportal",
        creator="hpcportal",
        lang=lang,
        # Every page starts in the report's own font, so no unembedded Helvetica.
        initialFontName=f.regular,
    )
    story: list[Flowable] = title_page(document, s, width)
    for section in document.sections:
        story += section_flowables(section, lang, s, f, width)

    def footer(canvas: Canvas, _doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(f.regular, SMALL)
        canvas.setFillColor(GREY)
        page = canvas.getPageNumber()
        number = f"{page}{label(lang, 'page')}" if lang == "ko" else f"{label(lang, 'page')} {page}"
        canvas.drawString(MARGIN, MARGIN - 2 * mm, document.title[:90])
        canvas.drawRightString(pagesize[0] - MARGIN, MARGIN - 2 * mm, number)
        canvas.restoreState()

    with _building:
        doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def page_for(document: ReportDocument, s: Styles) -> tuple[float, float]:
    """A4 portrait, or landscape when a table's columns at their natural widths (a
    custom report with many measures) would be squeezed on a portrait page: one
    orientation for the whole document, so its pages print and read alike."""
    for section in document.sections:
        for table in section.tables:
            texts, notes = cell_texts(table, document.language, MEASURED_ROWS)
            natural, _ = natural_widths(table, texts, notes, s, WIDTH)
            if sum(natural) > WIDTH:
                return landscape(A4)
    return A4


def title_page(document: ReportDocument, s: Styles, width: float) -> list[Flowable]:
    lang = document.language
    rows = [
        (label(lang, "scope"), document.scope),
        (label(lang, "period"), format_period(document.period, lang)),
    ]
    if document.previous_period is not None:
        rows.append((label(lang, "previous_period"), format_period(document.previous_period, lang)))
    rows.append((label(lang, "generated"), format_when(document.generated_at, lang)))
    facts = Table(
        [[Paragraph(escape(k), s.header), Paragraph(escape(v), s.body)] for k, v in rows],
        colWidths=[40 * mm, width - 40 * mm],
        hAlign="LEFT",
    )
    facts.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), s.body.fontName, BODY),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    story: list[Flowable] = [Spacer(1, 30 * mm), Paragraph(escape(document.title), s.title), facts]
    if document.sources:
        story.append(Paragraph(escape(label(lang, "sources")), s.subheading))
        story += [Paragraph(escape(source_text(src, lang)), s.body) for src in document.sources]
    story.append(PageBreak())
    return story


def source_text(source: Source, lang: Language) -> str:
    """A source line without its ``Source:`` prefix (the title page lists them)."""
    return source_line(source, lang).split(": ", 1)[1]


def section_flowables(
    section: Section, lang: Language, s: Styles, f: Fonts, width: float
) -> list[Flowable]:
    story: list[Flowable] = [CondPageBreak(60 * mm), Paragraph(escape(section.title), s.heading)]
    if section.text:
        story += [Paragraph(escape(part), s.body) for part in section.text.split("\n\n")]
    for table in section.tables:
        story += table_flowables(table, lang, s, width)
    for chart in section.charts:
        story.append(KeepTogether(chart_flowables(chart, lang, s, f, width)))
    return story


def cell_texts(
    table: DocTable, lang: Language, limit: int | None = None
) -> tuple[list[list[str]], list[list[str]]]:
    """The cells of the first ``limit`` rows (all by default) as printed, and each
    cell's change note ("" for none; no rows when there is no previous period)."""
    texts = [
        [format_cell(v, c.type, lang) for v, c in zip(row, table.columns, strict=True)]
        for row in table.rows[:limit]
    ]
    notes = [[("" if c is None else format_change(c, lang)) for c in row]
             for row in (changes(table) or [])[:limit]]  # fmt: skip
    return texts, notes


def table_flowables(table: DocTable, lang: Language, s: Styles, width: float) -> list[Flowable]:
    title = Paragraph(escape(table.title), s.subheading)
    numeric = [c.type in NUMERIC for c in table.columns]
    header = [
        Paragraph(escape(c.title), s.header_right if n else s.header)
        for c, n in zip(table.columns, numeric, strict=True)
    ]
    texts, notes = cell_texts(table, lang)
    widths = column_widths(table, texts, notes, s, width)
    body: list[list[str | Flowable]] = []
    for r, row in enumerate(texts):
        cells: list[str | Flowable] = []
        for i, text in enumerate(row):
            if notes and notes[r][i]:
                cells.append(Figure(text, notes[r][i], s.cell.fontName))
            elif (
                not numeric[i]
                and _width(text, s.cell.fontName, s.cell.fontSize) > widths[i] - PADDING
            ):
                cells.append(Paragraph(escape(text), s.cell))
            else:
                cells.append(text)
        body.append(cells)
    story: list[Flowable] = [CondPageBreak(45 * mm), title]
    if body:
        cls = LongTable if len(body) > 200 else Table
        grid = cls([header, *body], colWidths=widths, repeatRows=1, hAlign="LEFT")
        commands: list[Any] = [
            ("FONT", (0, 0), (-1, -1), s.cell.fontName, TABLE),
            ("TEXTCOLOR", (0, 0), (-1, -1), INK),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, GREY),
            ("LINEBELOW", (0, -1), (-1, -1), 0.4, RULE),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, STRIPE]),
            ("TOPPADDING", (0, 0), (-1, -1), 2.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ]
        commands += [("ALIGN", (i, 0), (i, -1), "RIGHT") for i, n in enumerate(numeric) if n]
        grid.setStyle(TableStyle(commands))
        story.append(grid)
    else:
        story.append(Paragraph("—", s.body))
    if table.note:
        story.append(Paragraph(escape(f"{label(lang, 'note')}: {table.note}"), s.small))
    if table.source is not None:
        story.append(Paragraph(escape(source_line(table.source, lang)), s.small))
    story.append(Spacer(1, 4 * mm))
    return story


class Figure(Flowable):
    """A number with its change under it, small and grey, both right-aligned.

    Drawn with two canvas calls: a Paragraph per cell (markup parsed, lines broken)
    made a year's per-user table several times slower to render."""

    def __init__(self, value: str, note: str, font: str) -> None:
        super().__init__()
        self.value, self.note, self.font = value, note, font
        self.width = max(_width(value, font, TABLE), _width(note, font, NOTE))
        self.height = TABLE * 1.25 + NOTE * 1.25

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        canvas.setFont(self.font, TABLE)
        canvas.setFillColor(INK)
        canvas.drawRightString(self.width, NOTE * 1.25 + TABLE * 0.3, self.value)
        canvas.setFont(self.font, NOTE)
        canvas.setFillColor(GREY)
        canvas.drawRightString(self.width, NOTE * 0.2, self.note)


def _width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def natural_widths(
    table: DocTable, texts: list[list[str]], notes: list[list[str]], s: Styles, width: float
) -> tuple[list[float], list[float]]:
    """Each column's width with its header broken at spaces, and whole: the widest
    word (or the whole header) and the widest cell and change note of the first rows,
    no cell wider than 45 % of ``width``."""
    natural: list[float] = []
    whole: list[float] = []
    for i, column in enumerate(table.columns):
        words = column.title.split() or [""]
        head = max(_width(w, s.header.fontName, s.header.fontSize) for w in words)
        full = _width(column.title, s.header.fontName, s.header.fontSize)
        cells = max(
            (_width(row[i], s.cell.fontName, s.cell.fontSize) for row in texts[:MEASURED_ROWS]),
            default=0.0,
        )
        for row in notes[:MEASURED_ROWS]:
            cells = max(cells, _width(row[i], s.cell.fontName, s.cell.fontSize) * NOTE / TABLE)
        natural.append(max(head, min(cells, width * 0.45)) + PADDING + 1)
        whole.append(max(full, min(cells, width * 0.45)) + PADDING + 1)
    return natural, whole


def column_widths(
    table: DocTable, texts: list[list[str]], notes: list[list[str]], s: Styles, width: float
) -> list[float]:
    """The natural widths (whole headers if all fit), shrunk to ``width``: text
    columns give way first, numbers keep what they need if they can."""
    natural, whole = natural_widths(table, texts, notes, s, width)
    if sum(whole) <= width:
        return whole
    total = sum(natural)
    if total <= width:
        return natural
    numeric = [c.type in NUMERIC for c in table.columns]
    fixed = sum(w for w, n in zip(natural, numeric, strict=True) if n)
    flexible = total - fixed
    if fixed < width * 0.7 and flexible > 0:
        scale = (width - fixed) / flexible
        return [w if n else w * scale for w, n in zip(natural, numeric, strict=True)]
    return [w * width / total for w in natural]


def chart_flowables(
    chart: Chart, lang: Language, s: Styles, f: Fonts, width: float
) -> list[Flowable]:
    title = chart.title + (f" ({chart.unit})" if chart.unit else "")
    story: list[Flowable] = [Paragraph(escape(title), s.subheading)]
    values = [v for series in chart.series for v in series.values if v is not None]
    if not chart.labels or not values:
        story.append(Paragraph("—", s.body))
    else:
        story.append(chart_drawing(chart, lang, f, min(values), max(values), width))
    if chart.source is not None:
        story.append(Paragraph(escape(source_line(chart.source, lang)), s.small))
    story.append(Spacer(1, 4 * mm))
    return story


def chart_drawing(
    chart: Chart, lang: Language, f: Fonts, low: float, high: float, width: float
) -> Drawing:
    """A bar or line chart over the page's width: thinned category labels, value axis
    labels grouped in the document's language, a legend naming each series."""
    height, legend_rows = 190.0, math.ceil(len(chart.series) / 3)
    drawing = Drawing(width, height + 14 * legend_rows, initialFontName=f.regular)
    plot: VerticalBarChart | HorizontalLineChart
    if chart.kind == "bar":
        bars = VerticalBarChart()
        for i in range(len(chart.series)):
            bars.bars[i].fillColor = PALETTE[i % len(PALETTE)]
            bars.bars[i].strokeColor = None
        bars.barSpacing, bars.groupSpacing = 1, max(2, 10 // max(1, len(chart.series)))
        plot = bars
    else:
        lines = HorizontalLineChart()
        lines.joinedLines = 0  # per series below: ReportLab cannot join fewer than 2 points
        for i, series in enumerate(chart.series):
            lines.lines[i].strokeColor = PALETTE[i % len(PALETTE)]
            lines.lines[i].strokeWidth = 1.6
            if sum(v is not None for v in series.values) >= 2:
                lines.lines[i].lineStyle = "joinedLine"
            else:
                lines.lines[i].symbol = makeMarker("FilledCircle", size=4)  # type: ignore[no-untyped-call]
        plot = lines
    plot.x, plot.y = 48, 40 + 14 * legend_rows
    plot.width, plot.height = int(width - 60), int(height - 55)
    plot.data = [tuple(series.values) for series in chart.series]
    step = max(1, math.ceil(len(chart.labels) / max(1, plot.width // 34)))
    plot.categoryAxis.categoryNames = [
        text if i % step == 0 else "" for i, text in enumerate(chart.labels)
    ]
    for axis in (plot.categoryAxis, plot.valueAxis):
        axis.labels.fontName = f.regular
        axis.labels.fontSize = 7
        axis.labels.fillColor = INK
        axis.strokeColor = GREY
    slot = plot.width * step / len(chart.labels)
    if max(_width(t, f.regular, 7) for t in chart.labels[::step]) > slot - 4:
        plot.categoryAxis.labels.angle = 30
        plot.categoryAxis.labels.boxAnchor = "ne"
    plot.valueAxis.valueMin = min(0.0, low)
    if high <= plot.valueAxis.valueMin:
        plot.valueAxis.valueMax = plot.valueAxis.valueMin + 1
    plot.valueAxis.labelTextFormat = lambda v: format_number(v, lang)
    plot.valueAxis.visibleGrid = True
    plot.valueAxis.gridStrokeColor = RULE
    drawing.add(plot)
    legend = Legend()
    legend.x, legend.y = 48, 10 + 14 * legend_rows
    legend.fontName, legend.fontSize = f.regular, 7.5
    legend.alignment = "right"
    legend.columnMaximum = legend_rows
    legend.deltax = int((width - 60) / 3)
    legend.boxAnchor = "nw"
    legend.colorNamePairs = [
        (PALETTE[i % len(PALETTE)], series.name) for i, series in enumerate(chart.series)
    ]
    drawing.add(legend)
    return drawing
