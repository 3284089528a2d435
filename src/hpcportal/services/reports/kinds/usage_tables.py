"""Tables, charts and sources of usage figures, shared by the kinds that show them
(job usage, custom; efficiency may use them too).

A table's rows are one period's ``UsageRow``s and its ``previous`` rows are the
previous period's rows of the same columns (the renderers pair them by
``key_columns``); numbers stay numbers, hours in hours, percentages as fractions.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcportal.services.reports.document import (
    Cell,
    Chart,
    Column,
    ColumnType,
    Language,
    Period,
    Series,
    Source,
    Table,
)
from hpcportal.services.reports.kinds.text import t
from hpcportal.services.reports.usage import COUNTS, PERCENTS, Scope, UsageResult, UsageRow

_TIME_FORMAT = "%Y-%m-%d %H:%M"


def measure_type(measure: str) -> ColumnType:
    if measure in COUNTS:
        return "integer"
    if measure in PERCENTS:
        return "percent"
    if measure.endswith("_hours"):
        return "hours"
    return "number"


def columns(dimensions: Sequence[str], measures: Sequence[str], language: Language) -> list[Column]:
    dims = [Column(key=d, title=t(language, f"dim.{d}"), type="text") for d in dimensions]
    return dims + [
        Column(key=m, title=t(language, f"m.{m}"), type=measure_type(m)) for m in measures
    ]


def cells(row: UsageRow, dimensions: Sequence[str], measures: Sequence[str]) -> list[Cell]:
    return [row.keys[d] for d in dimensions] + [row.values.get(m) for m in measures]


def source(result: UsageResult, language: Language) -> Source:
    """Where the figures came from: the usage store, the window it answered, the
    Slurm release the last window was read from, and how complete it is."""
    if result.complete_until is None:
        detail = t(language, "source.empty")
    else:
        detail = t(
            language, "source.complete_until", until=result.complete_until.strftime(_TIME_FORMAT)
        )
    return Source(
        name=t(language, "source.usage"),
        window=result.window,
        slurm_release=result.slurm_release,
        detail=detail,
    )


def incomplete_note(result: UsageResult, language: Language) -> str | None:
    """A note when the period reaches past what the store holds."""
    until = result.complete_until
    if until is None or until >= result.window.end:
        return None
    return t(language, "note.incomplete", until=until.strftime(_TIME_FORMAT))


def table(
    title: str,
    result: UsageResult,
    previous: UsageResult | None,
    dimensions: Sequence[str],
    measures: Sequence[str],
    language: Language,
    *,
    sort_by: str | None = None,
    limit: int | None = None,
) -> Table:
    """One table of ``result`` (and ``previous``) by ``dimensions``: rows sorted by
    ``sort_by`` (largest first) or by the dimensions, at most ``limit`` of them."""

    def ordered(rows: Sequence[UsageRow]) -> list[UsageRow]:
        if sort_by is None:
            return list(rows)
        return sorted(rows, key=lambda r: -float(r.values.get(sort_by) or 0))

    rows = ordered(result.rows)[:limit] if limit else ordered(result.rows)
    return Table(
        title=title,
        columns=columns(dimensions, measures, language),
        rows=[cells(r, dimensions, measures) for r in rows],
        key_columns=list(dimensions),
        previous=[cells(r, dimensions, measures) for r in ordered(previous.rows)]
        if previous
        else None,
        source=source(result, language),
        note=incomplete_note(result, language),
    )


def summary_table(
    title: str,
    result: UsageResult,
    previous: UsageResult | None,
    measures: Sequence[str],
    language: Language,
) -> Table:
    """The totals as rows of (measure, value): one row per measure, keyed by measure."""

    def rows(r: UsageResult) -> list[list[Cell]]:
        return [[t(language, f"m.{m}"), r.totals.get(m)] for m in measures]

    return Table(
        title=title,
        columns=[
            Column(key="measure", title=t(language, "dim.measure"), type="text"),
            Column(key="value", title=t(language, "col.value"), type="number"),
        ],
        rows=rows(result),
        key_columns=["measure"],
        previous=rows(previous) if previous else None,
        source=source(result, language),
        note=incomplete_note(result, language),
    )


def time_chart(
    title: str, result: UsageResult, measure: str, language: Language, unit: str | None
) -> Chart:
    """A line of ``measure`` over the time buckets of ``result`` (grouped by time only)."""
    labels = [r.keys["time"] for r in result.rows]
    values = [_number(r.values.get(measure)) for r in result.rows]
    return Chart(
        title=title,
        kind="line" if len(labels) > 12 else "bar",
        labels=labels,
        series=[Series(name=t(language, f"m.{measure}"), values=values)],
        unit=unit,
        source=source(result, language),
    )


def bar_chart(
    title: str,
    result: UsageResult,
    previous: UsageResult | None,
    dimension: str,
    measure: str,
    language: Language,
    unit: str | None,
    limit: int = 20,
) -> Chart:
    """Bars of ``measure`` by ``dimension`` (largest first), with the previous period's
    bars for the same labels."""
    rows = sorted(result.rows, key=lambda r: -float(r.values.get(measure) or 0))[:limit]
    labels = [r.keys[dimension] for r in rows]
    series = [
        Series(
            name=t(language, "series.period"), values=[_number(r.values.get(measure)) for r in rows]
        )
    ]
    if previous is not None:
        before = {r.keys[dimension]: r.values.get(measure) for r in previous.rows}
        series.append(
            Series(
                name=t(language, "series.previous"), values=[_number(before.get(x)) for x in labels]
            )
        )
    return Chart(
        title=title,
        kind="bar",
        labels=labels,
        series=series,
        unit=unit,
        source=source(result, language),
    )


def granularity_for(period: Period) -> str:
    """A time step that gives a readable number of points: hours for up to two days,
    days up to two months, weeks up to a year, months beyond."""
    days = (period.end - period.start).total_seconds() / 86400
    if days <= 2:
        return "hour"
    if days <= 62:
        return "day"
    if days <= 366:
        return "week"
    return "month"


def scope_label(scope: Scope, language: Language) -> str:
    """``all``, ``account physics``, ``user alice`` in ``language``."""
    parts: list[str] = []
    if scope.only_accounts:
        parts.append(t(language, "scope.account", names=", ".join(sorted(scope.only_accounts))))
    if scope.only_users:
        parts.append(t(language, "scope.user", names=", ".join(sorted(scope.only_users))))
    if not parts:
        if scope.everyone:
            return t(language, "scope.all")
        if scope.accounts:
            parts.append(t(language, "scope.account", names=", ".join(sorted(scope.accounts))))
        if scope.own:
            parts.append(t(language, "scope.user", names=scope.own))
    return t(language, "scope.and").join(parts)


def _number(value: float | int | None) -> float | None:
    return None if value is None else float(value)
