"""A report as a typed document: what every report kind builds and every format renders.

The report kinds (``services/reports/kinds``) turn usage figures into a
``ReportDocument``; the renderers (``services/reports/render``) turn one document into
PDF, XLSX, CSV or JSON. Neither side knows the other: a new kind needs no renderer
change and a new format no kind change. Text in a document is already translated into
its ``language``; numbers stay numbers (formats decide how to show them).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Language = Literal["en", "ko"]
ReportKind = Literal["job_usage", "efficiency", "system", "user_activity", "custom"]
ReportFormat = Literal["pdf", "xlsx", "csv", "json"]
#: How a column's values are typed: renderers keep numbers numeric and dates dates.
#: ``percent`` is a fraction (0.25 is 25 %, as spreadsheets store it); ``hours`` a
#: number of hours; ``seconds`` a duration in seconds (shown as h:mm:ss); ``date`` a
#: ``date`` and ``datetime`` an aware UTC ``datetime``. None is an empty cell.
ColumnType = Literal["text", "integer", "number", "percent", "hours", "seconds", "date", "datetime"]
Cell = str | int | float | date | datetime | None


class Period(BaseModel):
    """A half-open window [start, end) in UTC, as the report's figures cover it."""

    start: datetime
    end: datetime


class Source(BaseModel):
    """Where a figure came from, printed with it: ``name`` (usage store, sacct,
    Prometheus, audit log), the window it covers, and the Slurm release it was read
    from where that matters."""

    name: str
    window: Period
    slurm_release: str | None = None
    detail: str | None = None


class Column(BaseModel):
    key: str
    title: str
    type: ColumnType = "text"


class Table(BaseModel):
    """Rows of typed cells; ``previous`` holds the same rows for the period before
    (same keys in ``key_columns``), so formats can show the change."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    key_columns: list[str] = Field(default_factory=list)
    previous: list[list[Cell]] | None = None
    source: Source | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _dates_from_json(self) -> Table:
        """JSON has no dates: a stored document read back (``model_validate_json``)
        has ISO strings in its date and datetime columns. They become dates again, so
        a format rendered later from the stored document types them as the first did."""
        kinds = [c.type for c in self.columns]
        for row in [*self.rows, *(self.previous or [])]:
            for i, value in enumerate(row[: len(kinds)]):
                if isinstance(value, str) and kinds[i] in ("date", "datetime"):
                    try:
                        parse = date.fromisoformat if kinds[i] == "date" else datetime.fromisoformat
                        row[i] = parse(value)
                    except ValueError:
                        pass  # text in a date column stays text
        return self


class Series(BaseModel):
    name: str
    values: list[float | None]


class Chart(BaseModel):
    """A bar or line chart: ``labels`` on the x axis, one value per label per series."""

    title: str
    kind: Literal["bar", "line"] = "bar"
    labels: list[str]
    series: list[Series]
    unit: str | None = None
    source: Source | None = None


class Section(BaseModel):
    title: str
    text: str | None = None
    tables: list[Table] = Field(default_factory=list)
    charts: list[Chart] = Field(default_factory=list)


class ReportDocument(BaseModel):
    """One report, ready to render: title and who it is for, the period and the one
    before it, the sources, and its sections."""

    kind: ReportKind
    title: str
    language: Language = "en"
    generated_at: datetime
    period: Period
    previous_period: Period | None = None
    scope: str = Field(description="Whose figures: 'all', 'account physics', 'user alice'")
    sources: list[Source] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
