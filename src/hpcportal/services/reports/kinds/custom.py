"""The custom report: the dimensions, measures, filters and period the person chose,
from the usage store, with the previous period for comparison.

One table (the chosen dimensions, then the measures; largest first by the first
measure unless time is a dimension) and one chart: the first measure over time when
grouped by time alone, else by the first dimension.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from hpcportal.services.reports.document import Chart, ReportDocument, Section
from hpcportal.services.reports.kinds import BuildContext
from hpcportal.services.reports.kinds import usage_tables as ut
from hpcportal.services.reports.kinds.text import t
from hpcportal.services.reports.spec import Measure, ReportSpec, Viewer
from hpcportal.services.reports.usage import UsageQuery, query, resolve_scope

#: Measures when the spec names none.
DEFAULT_MEASURES: tuple[Measure, ...] = ("jobs", "cpu_hours", "gpu_hours")


def build(
    spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
) -> ReportDocument:
    """The custom document of ``spec`` for ``viewer`` (blocking)."""
    lang = spec.language
    scope = resolve_scope(viewer, spec.scope, spec.filters)
    measures = list(spec.measures) or list(DEFAULT_MEASURES)
    dimensions = list(spec.dimensions)
    q = UsageQuery.of(spec).model_copy(update={"measures": measures})
    result = query(session, q, scope)
    context.progress(50)
    previous_period = spec.previous_period() if spec.compare_previous else None
    previous = (
        query(session, q.model_copy(update={"period": previous_period}), scope)
        if previous_period is not None
        else None
    )
    context.progress(80)
    first = measures[0]
    by_time = "time" in dimensions
    title = t(lang, "custom.title")
    table = ut.table(
        t(lang, "section.custom"), result, previous, dimensions, measures, lang,
        sort_by=None if by_time else first,
    )  # fmt: skip
    charts: list[Chart] = []
    unit = t(lang, "unit.hours") if first.endswith("_hours") else None
    if dimensions == ["time"]:
        charts.append(ut.time_chart(t(lang, f"m.{first}"), result, first, lang, unit))
    elif dimensions and not by_time:
        charts.append(
            ut.bar_chart(t(lang, f"m.{first}"), result, previous, dimensions[0], first, lang, unit)
        )
    return ReportDocument(
        kind="custom",
        title=title,
        language=lang,
        generated_at=context.now,
        period=spec.period,
        previous_period=previous_period,
        scope=ut.scope_label(scope, lang),
        sources=[ut.source(result, lang)],
        sections=[Section(title=t(lang, "section.custom"), tables=[table], charts=charts)],
    )
