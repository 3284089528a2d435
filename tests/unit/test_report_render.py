"""Report renderers: a Korean and an English document as PDF, XLSX, CSV and JSON, read
back with the tools a person or a program would use (poppler's pdftotext and pdffonts,
openpyxl, Python's csv reader).

poppler-utils and fonts-nanum are installed by scripts/setup.sh: a machine without
them fails these tests with what to install rather than skipping them.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl
import pytest

from hpcportal.config import Settings
from hpcportal.errors import Misconfigured
from hpcportal.services.reports.document import (
    Cell,
    Chart,
    Column,
    Language,
    Period,
    ReportDocument,
    Section,
    Series,
    Source,
    Table,
)
from hpcportal.services.reports.render import FORMATS, render, renderer, timed, xlsx
from hpcportal.services.reports.render.common import changes, format_change
from hpcportal.services.reports.render.pdf import DEFAULT_FONT_PATH
from hpcportal.services.reports.render.xlsx import sheet_name

KOREAN_NAMES = ["김철수", "이영희", "박민준", "최지우"]
ENGLISH_NAMES = ["alice", "bob", "carol", "dave"]
NOV = Period(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 12, 1, tzinfo=UTC))
OCT = Period(start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2026, 11, 1, tzinfo=UTC))
#: A Korean report of a few tables is tens of KB with NanumGothic subset; the whole
#: font embedded would be over 4 MB.
MAX_PDF_BYTES = 150_000

WORDS = {
    "ko": (
        "2026년 11월 작업 사용량 보고서",
        "사용자별 사용량",
        "사용자",
        "작업 수",
        "CPU 시간",
        "CPU 효율",
        "마지막 종료",
        "일별 작업",
        "날짜",
        "계정별 CPU 시간",
        "사용량 저장소",
    ),
    "en": (
        "Job usage report, November 2026",
        "Usage by user",
        "User",
        "Jobs",
        "CPU hours",
        "CPU efficiency",
        "Last end",
        "Jobs per day",
        "Day",
        "CPU hours by account",
        "usage store",
    ),
}


def document(language: Language, *, days: int = 30) -> ReportDocument:
    """Four users with the month before, a long per-day table and a bar chart."""
    title, users, user, jobs, cpu, eff, last, per_day, day, chart, store = WORDS[language]
    names = KOREAN_NAMES if language == "ko" else ENGLISH_NAMES
    source = Source(name=store, window=NOV, slurm_release="24.11")
    columns = [
        Column(key="user", title=user),
        Column(key="account", title="account"),
        Column(key="jobs", title=jobs, type="integer"),
        Column(key="cpu_hours", title=cpu, type="hours"),
        Column(key="cpu_eff", title=eff, type="percent"),
        Column(key="wait", title="wait", type="seconds"),
        Column(key="last_end", title=last, type="datetime"),
    ]
    rows: list[list[Cell]] = [
        [names[0], "physics", 1200, 12345.5, 0.75, 3725, datetime(2026, 11, 30, 9, 15, tzinfo=UTC)],
        [names[1], "physics", 35, 20.25, 0.5, 61, datetime(2026, 11, 2, 0, 0, tzinfo=UTC)],
        [names[2], "chemistry", 0, 0.0, None, None, None],
        [names[3], "chemistry", 7, 1.5, 0.125, 0, datetime(2026, 11, 20, 23, 59, tzinfo=UTC)],
    ]
    previous: list[list[Cell]] = [
        [names[0], "physics", 1000, 10000.0, 0.70, 3000, None],
        [names[1], "physics", 70, 10.125, 0.5, 60, None],
        [names[3], "chemistry", 7, 3.0, 0.25, 0, None],
    ]
    by_user = Table(
        title=users,
        columns=columns,
        rows=rows,
        key_columns=["user", "account"],
        previous=previous,
        source=source,
        note="=1+1",
    )
    daily = Table(
        title=per_day,
        columns=[
            Column(key="day", title=day, type="date"),
            Column(key="jobs", title=jobs, type="integer"),
        ],
        rows=[[date(2026, 11, 1 + i % 30), 100 + i] for i in range(days * 4)],
        source=source,
    )
    return ReportDocument(
        kind="job_usage",
        title=title,
        language=language,
        generated_at=datetime(2026, 12, 1, 2, 5, tzinfo=UTC),
        period=NOV,
        previous_period=OCT,
        scope="account physics" if language == "en" else "계정 physics",
        sources=[source],
        sections=[
            Section(
                title=users,
                text="…",
                tables=[by_user],
                charts=[
                    Chart(
                        title=chart,
                        labels=["physics", "chemistry"],
                        series=[Series(name=cpu, values=[12365.75, 1.5])],
                        unit="h",
                        source=source,
                    ),
                ],
            ),
            Section(title=per_day, tables=[daily]),
        ],
    )


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install poppler-utils (scripts/setup.sh installs it)")
    return found


def pdf_text(pdf: bytes, tmp_path: Path, page: int | None = None) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    args = [tool("pdftotext"), "-layout", *pages, str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def pdf_fonts(pdf: bytes, tmp_path: Path) -> list[list[str]]:
    """pdffonts' rows: name, type…, emb, sub, uni, object, generation (split on spaces)."""
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    args = [tool("pdffonts"), str(path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split() for line in out.splitlines()[2:] if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def _font_installed() -> None:
    if not DEFAULT_FONT_PATH.is_file():
        pytest.fail(f"{DEFAULT_FONT_PATH} is missing: install fonts-nanum (scripts/setup.sh)")


# PDF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ko", "en"])
def test_pdf_gives_back_the_title_and_names_exactly(language: Language, tmp_path: Path) -> None:
    doc = document(language)
    pdf = render(doc, "pdf")
    text = pdf_text(pdf, tmp_path)
    assert doc.title in text
    for name in KOREAN_NAMES if language == "ko" else ENGLISH_NAMES:
        assert re.search(rf"(?m)^\s*{name}\s", text), name
    assert doc.sections[0].title in text and doc.scope in text
    # Numbers grouped, source line under the table, change vs the month before.
    assert "12,345.5" in text and "1,200" in text and "1:02:05" in text
    assert "▲ 23.5%" in text  # 10000 -> 12345.5
    assert ("▲ 5.0%p" if language == "ko" else "▲ 5.0 pp") in text  # 70% -> 75%
    assert ("신규" if language == "ko" else "new") in text  # carol/박민준 had no row
    source = "출처: 사용량 저장소" if language == "ko" else "Source: usage store"
    assert text.count(source) >= 3  # two tables and the chart
    assert "Slurm 24.11" in text


def test_pdf_embeds_nanumgothic_as_a_subset_and_stays_small(tmp_path: Path) -> None:
    pdf = render(document("ko"), "pdf")
    fonts = pdf_fonts(pdf, tmp_path)
    assert fonts, "pdffonts lists the fonts"
    for row in fonts:
        name, emb, sub, uni = row[0], row[-5], row[-4], row[-3]
        assert re.fullmatch(r"[A-Z]{6}\+NanumGothic(Bold)?", name), row
        assert (emb, sub, uni) == ("yes", "yes", "yes"), row
    assert any(row[0].endswith("+NanumGothic") for row in fonts)
    assert len(pdf) < MAX_PDF_BYTES, len(pdf)
    assert DEFAULT_FONT_PATH.stat().st_size > 30 * MAX_PDF_BYTES  # so subsetting is what holds


def test_pdf_repeats_table_headers_on_every_page(tmp_path: Path) -> None:
    doc = document("ko", days=60)  # 240 daily rows: several pages
    pdf = render(doc, "pdf")
    pages = int(re.findall(r"(\d+)쪽", pdf_text(pdf, tmp_path))[-1])
    assert pages >= 5
    day_title, jobs_title = WORDS["ko"][8], WORDS["ko"][3]
    for page in range(pages - 2, pages + 1):
        text = pdf_text(pdf, tmp_path, page)
        header = next(line for line in text.splitlines() if line.strip())
        assert day_title in header and jobs_title in header, (page, header)


def page_sizes(pdf: bytes, tmp_path: Path) -> set[str]:
    """pdfinfo's size of every page, e.g. ``595.276 x 841.89``."""
    path = tmp_path / "sizes.pdf"
    path.write_bytes(pdf)
    args = [tool("pdfinfo"), "-f", "1", "-l", "999", str(path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return set(re.findall(r"Page +\d+ size: +([\d.]+ x [\d.]+) pts", out))


def test_a_table_too_wide_for_portrait_turns_the_whole_pdf_to_landscape(tmp_path: Path) -> None:
    """A custom report of many measures: A4 landscape on every page, every header and
    figure of the wide table readable; the usual report stays portrait."""
    assert page_sizes(render(document("en"), "pdf"), tmp_path) == {"595.276 x 841.89"}
    measures = [f"Measure number {i}" for i in range(12)]
    wide = Table(
        title="Custom",
        columns=[Column(key="user", title="User")]
        + [Column(key=f"m{i}", title=t, type="hours") for i, t in enumerate(measures)],
        rows=[[name] + [12345.25 * (i + 1) for i in range(12)] for name in ENGLISH_NAMES],
    )
    doc = document("en").model_copy(
        update={"sections": [*document("en").sections, Section(title="Custom", tables=[wide])]}
    )
    pdf = render(doc, "pdf")
    assert page_sizes(pdf, tmp_path) == {"841.89 x 595.276"}
    text = pdf_text(pdf, tmp_path)
    assert "148,143" in text  # 12345.25 x 12, not cut to fit
    assert all(w in text for w in ("Measure", "number", "11"))


def test_pdf_line_chart_with_gaps(tmp_path: Path) -> None:
    """A line chart whose series miss a value (a day without figures) still draws."""
    doc = document("ko")
    doc.sections[1].charts.append(
        Chart(title="일별 GPU 시간", kind="line", labels=["11-01", "11-02", "11-03"],
              series=[Series(name="gpu 파티션", values=[1.0, None, 3.0]),
                      Series(name="viz 파티션", values=[None, None, None])])
    )  # fmt: skip
    text = pdf_text(render(doc, "pdf"), tmp_path)
    assert "일별 GPU 시간" in text and "gpu 파티션" in text and "viz 파티션" in text


def test_a_missing_font_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(Misconfigured, match="fonts-nanum"):
        render(document("ko"), "pdf", font_path=tmp_path / "NoSuchFont.ttf")
    bound = renderer(Settings(state_dir=tmp_path, reports_font_path=tmp_path / "x.ttf"))
    with pytest.raises(Misconfigured, match="reports_font_path"):
        bound(document("en"), "pdf")
    assert bound(document("en"), "csv")  # other formats need no font


# XLSX --------------------------------------------------------------------------------


def test_xlsx_one_sheet_per_table_typed_and_frozen() -> None:
    doc = document("ko")
    book = openpyxl.load_workbook(io.BytesIO(render(doc, "xlsx")))
    by_user, daily = doc.sections[0].tables[0], doc.sections[1].tables[0]
    chart = doc.sections[0].charts[0]
    assert book.sheetnames == [by_user.title, chart.title, daily.title, "출처"]
    for sheet in book.worksheets[:3]:
        assert sheet.freeze_panes == "A2", sheet.title

    users = book[by_user.title]
    header = [c.value for c in users[1]]
    assert header[:5] == ["사용자", "account", "작업 수", "작업 수 (이전 기간)", "작업 수 (변화)"]
    first = [c.value for c in users[2]]
    assert first[0] == "김철수" and first[1] == "physics"
    assert first[2] == 1200 and isinstance(first[2], int)
    assert first[3] == 1000 and first[4] == pytest.approx(0.2)
    assert first[5] == 12345.5 and users.cell(2, 6).number_format == "#,##0.0"
    eff = header.index("CPU 효율")
    assert first[eff] == 0.75 and users.cell(2, eff + 1).number_format == "0.0%"
    assert first[-1] == datetime(2026, 11, 30, 9, 15)  # a real datetime, UTC
    assert users.cell(2, len(header)).is_date
    empty = [c.value for c in users[4]]
    assert empty[0] == "박민준" and empty[header.index("wait")] is None
    assert users.column_dimensions["A"].width >= 8

    days = book[daily.title]
    assert days.cell(2, 1).value == datetime(2026, 11, 1) and days.cell(2, 1).is_date
    assert days.max_row == len(daily.rows) + 1
    assert len(book[chart.title]._charts) == 1  # a native chart with its data
    assert [c.value for c in book[chart.title][2]] == ["physics", 12365.75]

    sources = [[c.value for c in row] for row in book["출처"].iter_rows()]
    assert sources[0][0] == doc.title
    window = [datetime(2026, 11, 1), datetime(2026, 12, 1)]
    assert [by_user.title, "사용량 저장소", *window, "24.11", None, "=1+1"] in sources
    assert book["출처"].cell(len(sources), 7).data_type in ("s", "n")  # text, never a formula


def test_xlsx_text_is_never_a_formula() -> None:
    doc = document("en")
    doc.sections[0].tables[0].rows[0][0] = '=HYPERLINK("http://x","y")'
    book = openpyxl.load_workbook(io.BytesIO(render(doc, "xlsx")))
    cell = book[doc.sections[0].tables[0].title]["A2"]
    assert cell.value == '=HYPERLINK("http://x","y")' and cell.data_type == "s"


def test_xlsx_refuses_a_table_larger_than_a_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rather than XlsxWriter silently leaving rows out."""
    monkeypatch.setattr(xlsx, "MAX_ROWS", 100)
    with pytest.raises(ValueError, match="more than an Excel sheet holds"):
        render(document("en"), "xlsx")  # 120 daily rows
    assert render(document("en", days=20), "xlsx")  # 80 rows fit


def test_pdfs_rendered_at_once_in_threads_are_each_right(tmp_path: Path) -> None:
    """Report workers render in threads; each PDF keeps its own text and font subset."""
    docs = {lang: document(lang) for lang in ("ko", "en")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        out = dict(zip(docs, pool.map(lambda d: render(d, "pdf"), docs.values()), strict=True))
    for lang, pdf in out.items():
        text = pdf_text(pdf, tmp_path)
        assert docs[lang].title in text
        names = KOREAN_NAMES if lang == "ko" else ENGLISH_NAMES
        assert all(name in text for name in names)


def test_sheet_names_are_valid_and_unique() -> None:
    taken: set[str] = set()
    names = [
        sheet_name(t, taken)
        for t in ["CPU/GPU [hours]: *all*?", "a" * 40, "a" * 40, "History", "Users", "users", "'"]
    ]
    assert names[0] == "CPU GPU  hours    all" and len(names[1]) == 31
    assert names[2].endswith(" (2)") and len(names[2]) == 31
    assert names[3] != "History" and names[5] == "users (2)" and names[6] == "Sheet"
    assert len({n.casefold() for n in names}) == len(names)
    assert all(not re.search(r"[\[\]:*?/\\]", n) and len(n) <= 31 for n in names)


# CSV ---------------------------------------------------------------------------------


def csv_blocks(data: bytes) -> dict[str, list[list[str]]]:
    """The CSV's blocks by title: rows up to the next empty row."""
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark"
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    blocks: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for row in rows:
        if not row:
            current = None
        elif current is None:
            current = blocks.setdefault(row[0], [])
        else:
            current.append(row)
    return blocks


def parse(text: str, kind: str) -> Cell:
    if text == "":
        return None
    if kind == "integer":
        return int(text)
    if kind in ("number", "hours", "percent", "seconds"):
        return float(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "datetime":
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return text


@pytest.mark.parametrize("language", ["ko", "en"])
def test_csv_round_trips(language: Language) -> None:
    doc = document(language)
    blocks = csv_blocks(render(doc, "csv"))
    assert next(iter(blocks)) == doc.title and list(blocks)[-1] in ("출처", "Sources")
    for table in (doc.sections[0].tables[0], doc.sections[1].tables[0]):
        header, *rows = blocks[table.title]
        titles = [c.title for c in table.columns]
        assert [h for h in header if h in titles] == titles
        index = [header.index(t) for t in titles]
        parsed = [
            [parse(row[i], c.type) for i, c in zip(index, table.columns, strict=True)]
            for row in rows
        ]
        assert parsed == table.rows
    by_user = blocks[doc.sections[0].tables[0].title]
    change = by_user[0].index(by_user[0][2] + (" (변화)" if language == "ko" else " (change)"))
    assert float(by_user[1][change]) == pytest.approx(0.2)  # 1000 -> 1200 jobs
    chart = doc.sections[0].charts[0]
    assert blocks[chart.title][1:] == [["physics", "12365.75"], ["chemistry", "1.5"]]


def test_csv_defuses_formulas_in_text() -> None:
    doc = document("en")
    doc.sections[0].tables[0].rows[0][0] = "=cmd|' /C calc'!A0"
    doc.sections[0].tables[0].rows[1][0] = "-bob"
    blocks = csv_blocks(render(doc, "csv"))
    rows = blocks[doc.sections[0].tables[0].title][1:]
    assert rows[0][0] == "'=cmd|' /C calc'!A0" and rows[1][0] == "'-bob"


# JSON, the dispatcher, the previous period ------------------------------------------


def test_json_is_the_document() -> None:
    """And a format rendered later from the stored JSON types its cells as the first:
    JSON has no dates, the contract makes them dates again."""
    doc = document("ko")
    again = ReportDocument.model_validate_json(render(doc, "json"))
    assert again == doc
    daily = again.sections[1].tables[0]
    assert type(daily.rows[0][0]) is date
    book = openpyxl.load_workbook(io.BytesIO(render(again, "xlsx")))
    assert book[daily.title]["A2"].is_date


def test_formats_and_unknown_format() -> None:
    assert set(FORMATS) == {"pdf", "xlsx", "csv", "json"}
    assert FORMATS["xlsx"].extension == "xlsx" and FORMATS["pdf"].media_type == "application/pdf"
    with pytest.raises(ValueError, match="formats: pdf, xlsx, csv, json"):
        render(document("en"), "docx")


def test_change_against_the_previous_period() -> None:
    table = document("en").sections[0].tables[0]
    found = changes(table)
    assert found is not None
    jobs, hours, eff = (found[0][i] for i in (2, 3, 4))
    assert jobs is not None and jobs.ratio == pytest.approx(0.2)
    assert eff is not None and eff.points and eff.ratio == pytest.approx(0.05)
    assert format_change(eff, "ko") == "▲ 5.0%p" and format_change(eff, "en") == "▲ 5.0 pp"
    assert hours is not None and format_change(hours, "en") == "▲ 23.5%"
    new = found[2][2]
    assert new is not None and new.previous is None and format_change(new, "ko") == "신규"
    assert found[0][0] is None and found[0][6] is None  # keys and datetimes: no change


def test_timed_measures_every_format() -> None:
    timings = timed(document("en"), ("csv", "json"))
    assert [t.format for t in timings] == ["csv", "json"]
    assert all(t.size > 0 and t.seconds >= 0 for t in timings)
