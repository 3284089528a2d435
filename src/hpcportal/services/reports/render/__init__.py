"""Renderers: one ``ReportDocument`` to the bytes of a PDF, XLSX, CSV or JSON file.

``render(document, fmt)`` is the one entry point (``generation`` calls it through
``renderer(settings)``, which binds the PDF font); ``FORMATS`` says each format's media
type and file extension. Renderers are pure: no database, no Slurm, no clock, so one
document renders the same on every replica and a stored document can be rendered
again in another format later. ``timed`` serves ``bench/reports.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from hpcportal.config import Settings
from hpcportal.services.reports.document import ReportDocument, ReportFormat
from hpcportal.services.reports.render.csvfile import render_csv
from hpcportal.services.reports.render.pdf import DEFAULT_FONT_PATH, render_pdf
from hpcportal.services.reports.render.xlsx import render_xlsx


@dataclass(frozen=True)
class FileFormat:
    media_type: str
    extension: str


FORMATS: dict[ReportFormat, FileFormat] = {
    "pdf": FileFormat("application/pdf", "pdf"),
    "xlsx": FileFormat("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "csv": FileFormat("text/csv; charset=utf-8", "csv"),
    "json": FileFormat("application/json", "json"),
}
assert set(FORMATS) == set(get_args(ReportFormat))


def render(document: ReportDocument, fmt: str, *, font_path: Path = DEFAULT_FONT_PATH) -> bytes:
    """The file of ``document`` in ``fmt`` (one of ``FORMATS``; ValueError otherwise).

    Blocking and CPU-bound (a large PDF takes seconds): call it from a worker thread."""
    if fmt == "pdf":
        return render_pdf(document, font_path)
    if fmt == "xlsx":
        return render_xlsx(document)
    if fmt == "csv":
        return render_csv(document)
    if fmt == "json":
        return document.model_dump_json().encode("utf-8")
    raise ValueError(f"Unknown report format {fmt[:16]!r}; formats: {', '.join(FORMATS)}.")


def renderer(settings: Settings) -> Callable[[ReportDocument, str], bytes]:
    """``render`` with the site's PDF font (``reports_font_path``)."""
    font_path = settings.reports_font_path

    def bound(document: ReportDocument, fmt: str) -> bytes:
        return render(document, fmt, font_path=font_path)

    return bound


@dataclass(frozen=True)
class Timing:
    format: str
    seconds: float
    size: int


def timed(
    document: ReportDocument,
    formats: Iterable[str] = tuple(FORMATS),
    *,
    font_path: Path = DEFAULT_FONT_PATH,
    repeat: int = 1,
) -> list[Timing]:
    """Render ``document`` in each format ``repeat`` times; the best wall time and the
    file size per format. For ``bench/reports.py``: build the one-year document once,
    then ``timed(document)``; ``synthetic.synthetic_document`` gives a document of any
    size without a usage store."""
    out = []
    for fmt in formats:
        best, size = float("inf"), 0
        for _ in range(max(1, repeat)):
            start = time.perf_counter()
            size = len(render(document, fmt, font_path=font_path))
            best = min(best, time.perf_counter() - start)
        out.append(Timing(fmt, best, size))
    return out
