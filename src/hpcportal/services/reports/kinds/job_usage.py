"""The job-usage report: CPU, GPU and memory hours, jobs by state, wait and wall time,
by user, account and partition, over time, each with the previous period.

All figures come from the usage store (``usage.query``) within what the viewer may
see (``usage.resolve_scope``); the previous period is the spec's ``previous`` or the
period of the same length just before. Every table and chart carries its source (the
usage store, the window it answered, the Slurm release it was read from).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from hpcportal.services.reports.document import (
    Chart,
    Column,
    Language,
    ReportDocument,
    Section,
    Series,
    Table,
)
from hpcportal.services.reports.kinds import BuildContext
from hpcportal.services.reports.kinds import usage_tables as ut
from hpcportal.services.reports.kinds.text import t
from hpcportal.services.reports.spec import Measure, ReportSpec, Viewer
from hpcportal.services.reports.usage import UsageQuery, UsageResult, query, resolve_scope

#: The figures of the summary and of each "by ..." table.
SUMMARY: tuple[Measure, ...] = (
    "jobs",
    "cpu_hours",
    "gpu_hours",
    "memory_gb_hours",
    "wall_hours",
    "mean_wait_minutes",
    "mean_wall_minutes",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "other",
)
BY: tuple[Measure, ...] = (
    "jobs",
    "cpu_hours",
    "gpu_hours",
    "memory_gb_hours",
    "wall_hours",
    "mean_wait_minutes",
    "mean_wall_minutes",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
)
STATES: tuple[Measure, ...] = ("completed", "failed", "timed_out", "cancelled", "other")


def build(
    spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
) -> ReportDocument:
    """The job-usage document of ``spec`` for ``viewer`` (blocking)."""
    lang = spec.language
    scope = resolve_scope(viewer, spec.scope, spec.filters)
    previous_period = spec.previous_period() if spec.compare_previous else None

    def ask(dimensions: list[str], measures: tuple[Measure, ...], *, previous: bool = False,
            granularity: str | None = None) -> UsageResult:  # fmt: skip
        period = previous_period if previous and previous_period else spec.period
        q = UsageQuery.model_validate(
            {
                "period": period,
                "dimensions": dimensions,
                "measures": list(measures),
                "filters": spec.filters,
                "granularity": granularity or spec.granularity,
                "time_zone": spec.time_zone,
            }
        )
        return query(session, q, scope)

    def pair(
        dimensions: list[str], measures: tuple[Measure, ...]
    ) -> tuple[UsageResult, UsageResult | None]:
        now = ask(dimensions, measures)
        return now, (ask(dimensions, measures, previous=True) if previous_period else None)

    total, total_before = pair([], SUMMARY)
    context.progress(20)
    summary = Section(
        title=t(lang, "section.summary"),
        text=t(lang, "summary.text"),
        tables=[ut.summary_table(t(lang, "section.summary"), total, total_before, SUMMARY, lang)],
    )
    sections = [summary]
    by_account: tuple[UsageResult, UsageResult | None] | None = None
    for dimension, key in (("user", "section.by_user"), ("account", "section.by_account"),
                           ("partition", "section.by_partition")):  # fmt: skip
        now, before = pair([dimension], BY)
        if dimension == "account":
            by_account = (now, before)
        title = t(lang, key)
        sections.append(
            Section(
                title=title,
                tables=[ut.table(title, now, before, [dimension], BY, lang, sort_by="cpu_hours")],
            )
        )
    context.progress(60)
    sections.append(_states(total, total_before, lang))
    step = ut.granularity_for(spec.period)
    over_time = ask(["time"], ("cpu_hours", "gpu_hours", "jobs"), granularity=step)
    charts = [
        ut.time_chart(
            t(lang, "chart.cpu_over_time"), over_time, "cpu_hours", lang, t(lang, "unit.hours")
        ),
        ut.time_chart(
            t(lang, "chart.gpu_over_time"), over_time, "gpu_hours", lang, t(lang, "unit.hours")
        ),
    ]
    if by_account is not None:
        charts.append(
            ut.bar_chart(
                t(lang, "chart.cpu_by_account"),
                by_account[0],
                by_account[1],
                "account",
                "cpu_hours",
                lang,
                t(lang, "unit.hours"),
            )
        )
    sections.insert(1, Section(title=t(lang, "section.over_time"), charts=charts))
    context.progress(90)
    return ReportDocument(
        kind="job_usage",
        title=t(lang, "job_usage.title"),
        language=lang,
        generated_at=context.now,
        period=spec.period,
        previous_period=previous_period,
        scope=ut.scope_label(scope, lang),
        sources=[ut.source(total, lang)],
        sections=sections,
    )


def _states(total: UsageResult, before: UsageResult | None, language: Language) -> Section:
    """Jobs by final state: a table (with the previous period) and a bar chart."""
    title = t(language, "section.by_state")

    def rows(r: UsageResult) -> list[list[str | int | float | None]]:
        return [[t(language, f"m.{s}"), r.totals.get(s)] for s in STATES]

    table = Table(
        title=title,
        columns=[
            Column(key="state", title=t(language, "dim.state"), type="text"),
            Column(key="jobs", title=t(language, "m.jobs"), type="integer"),
        ],
        rows=list(rows(total)),
        key_columns=["state"],
        previous=list(rows(before)) if before else None,
        source=ut.source(total, language),
    )
    series = [
        Series(
            name=t(language, "series.period"),
            values=[float(total.totals.get(s) or 0) for s in STATES],
        )
    ]
    if before is not None:
        series.append(
            Series(
                name=t(language, "series.previous"),
                values=[float(before.totals.get(s) or 0) for s in STATES],
            )
        )
    chart = Chart(
        title=t(language, "chart.jobs_by_state"),
        kind="bar",
        labels=[t(language, f"m.{s}") for s in STATES],
        series=series,
        unit=t(language, "unit.jobs"),
        source=ut.source(total, language),
    )
    return Section(title=title, tables=[table], charts=[chart])
