"""The efficiency report: how well jobs used what they were given, by user, account
and partition, against the period before.

Figures and where they come from:

- CPU efficiency = CPU time used / (allocated CPUs x wall time), and wall-time accuracy
  = wall time / requested time (started jobs), from the usage store's rollups (daily for
  whole UTC days, else hourly), as sacct reported the jobs.
- Short jobs: started jobs that ran less than ``report_short_job_minutes``, from the
  store's per-job rows (``usage_jobs``); their share is of the started jobs.
- Wasted GPU hours: GPU hours of jobs whose GPUs sat idle. A job is idle when the
  leader's idle-GPU check told its owner so (``gpu_idle_nudges``) or, with Prometheus
  configured, when its GPUs' mean utilisation over its run was below
  ``gpu_idle_threshold_percent`` (``prometheus.py``; the newest GPU jobs only).
- Memory: the store keeps allocated memory (GB-hours), not what jobs used, so memory
  efficiency is not known and the report says so rather than guessing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import GpuIdleNudge
from hpcportal.db.report_tables import UsageHourly, UsageJob
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
from hpcportal.services.reports.kinds import BuildContext, prometheus, support
from hpcportal.services.reports.spec import ReportSpec, Viewer

#: The dimensions the report has a table for, in order.
DIMENSIONS = ("user", "account", "partition")
#: A nudged job ended at most this long after its nudge (the longest sensible job).
_NUDGE_LOOKBACK = timedelta(days=31)

TEXT: dict[Language, dict[str, str]] = {
    "en": {
        "title": "Efficiency report",
        "overview": "Overview",
        "measure": "Measure",
        "value": "Value",
        "user": "User",
        "account": "Account",
        "partition": "Partition",
        "by_user": "Efficiency by user",
        "by_account": "Efficiency by account",
        "by_partition": "Efficiency by partition",
        "started": "Started jobs",
        "cpu_hours": "CPU hours allocated",
        "cpu_efficiency": "CPU efficiency",
        "wall_accuracy": "Wall-time accuracy",
        "short_jobs": "Short jobs",
        "short_share": "Short-job share",
        "gpu_hours": "GPU hours",
        "wasted_gpu_hours": "Wasted GPU hours",
        "wasted_gpu_share": "Wasted GPU share",
        "memory_gb_hours": "Memory GB-hours allocated",
        "chart": "CPU efficiency by partition",
        "intro": "CPU efficiency is CPU time used / (allocated CPUs x wall time); "
        "wall-time accuracy is wall time / requested time; short jobs ran less than "
        "{minutes} minutes.",
        "memory_note": "Memory efficiency is not known: the usage store keeps the "
        "memory jobs were allocated, not what they used.",
        "gpu_note": "Idle GPUs: jobs the idle-GPU check told their owner about "
        "(below {threshold}% for {window} minutes){prom}.",
        "prom_used": ", and the {count} newest GPU jobs whose mean GPU utilisation in "
        "Prometheus was below {threshold}%",
        "prom_off": "; Prometheus is not configured, so no other job was checked",
        "prom_failed": "; Prometheus could not be asked ({reason})",
        "nudges": "idle-GPU checks (gpu_idle_nudges)",
    },
    "ko": {
        "title": "효율 보고서",
        "overview": "개요",
        "measure": "항목",
        "value": "값",
        "user": "사용자",
        "account": "계정",
        "partition": "파티션",
        "by_user": "사용자별 효율",
        "by_account": "계정별 효율",
        "by_partition": "파티션별 효율",
        "started": "시작된 작업",
        "cpu_hours": "할당 CPU 시간",
        "cpu_efficiency": "CPU 효율",
        "wall_accuracy": "실행 시간 정확도",
        "short_jobs": "짧은 작업",
        "short_share": "짧은 작업 비율",
        "gpu_hours": "GPU 시간",
        "wasted_gpu_hours": "낭비된 GPU 시간",
        "wasted_gpu_share": "낭비된 GPU 비율",
        "memory_gb_hours": "할당 메모리 GB시간",
        "chart": "파티션별 CPU 효율",
        "intro": "CPU 효율은 사용한 CPU 시간 / (할당 CPU x 실행 시간), 실행 시간 "
        "정확도는 실행 시간 / 요청 시간입니다. 짧은 작업은 {minutes}분 미만 실행된 "
        "작업입니다.",
        "memory_note": "메모리 효율은 알 수 없습니다: 사용량 저장소에는 작업이 사용한 "
        "메모리가 아니라 할당된 메모리만 있습니다.",
        "gpu_note": "유휴 GPU: 유휴 GPU 검사가 소유자에게 알린 작업({window}분 동안 "
        "{threshold}% 미만){prom}.",
        "prom_used": ", 그리고 Prometheus의 평균 GPU 사용률이 {threshold}% 미만인 최근 "
        "GPU 작업 {count}개",
        "prom_off": "; Prometheus가 설정되지 않아 다른 작업은 검사하지 않았습니다",
        "prom_failed": "; Prometheus에 물어볼 수 없었습니다 ({reason})",
        "nudges": "유휴 GPU 검사 (gpu_idle_nudges)",
    },
}


@dataclass
class Figures:
    """The sums behind one row (a user, an account, a partition or everything)."""

    started: int = 0
    cpu_seconds: int = 0
    cpu_time_seconds: float = 0.0
    wall_seconds: int = 0
    requested_seconds: int = 0
    gpu_seconds: int = 0
    memory_mb_seconds: int = 0
    short_jobs: int = 0
    wasted_gpu_seconds: float = 0.0

    def add(self, other: Figures) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def cells(self) -> list[Cell]:
        """The row's figures in ``MEASURES`` order."""
        return [
            self.started,
            self.cpu_seconds / 3600,
            support.ratio(self.cpu_time_seconds, self.cpu_seconds),
            support.ratio(self.wall_seconds, self.requested_seconds),
            self.short_jobs,
            support.ratio(self.short_jobs, self.started),
            self.gpu_seconds / 3600,
            self.wasted_gpu_seconds / 3600,
            support.ratio(self.wasted_gpu_seconds, self.gpu_seconds),
            self.memory_mb_seconds / 1024 / 3600,
        ]


#: The measures of a row, with their column types (``Figures.cells`` order).
MEASURES: tuple[tuple[str, Any], ...] = (
    ("started", "integer"),
    ("cpu_hours", "hours"),
    ("cpu_efficiency", "percent"),
    ("wall_accuracy", "percent"),
    ("short_jobs", "integer"),
    ("short_share", "percent"),
    ("gpu_hours", "hours"),
    ("wasted_gpu_hours", "hours"),
    ("wasted_gpu_share", "percent"),
    ("memory_gb_hours", "number"),
)

#: (user, account, partition) -> figures.
Groups = dict[tuple[str, str, str], Figures]


@dataclass
class Measured:
    groups: Groups = field(default_factory=dict)
    idle_by_prometheus: int = 0
    prometheus_checked: int = 0
    prometheus_problem: str | None = None


def _group(groups: Groups, key: tuple[str, str, str]) -> Figures:
    found = groups.get(key)
    if found is None:
        found = groups[key] = Figures()
    return found


def measure(
    session: Session,
    spec: ReportSpec,
    viewer: Viewer,
    period: Period,
    settings: Settings,
    factory: prometheus.Factory | None = None,
) -> Measured:
    """Every figure of one period, grouped by (user, account, partition)."""
    out = Measured()
    rollup = support.rollup_for(period)
    start = period.start if rollup is not UsageHourly else support.hours_floor(period.start)
    sums = session.execute(
        select(
            rollup.user, rollup.account, rollup.partition,
            func.sum(rollup.started), func.sum(rollup.cpu_seconds),
            func.sum(rollup.cpu_time_seconds), func.sum(rollup.wall_seconds),
            func.sum(rollup.requested_seconds), func.sum(rollup.gpu_seconds),
            func.sum(rollup.memory_mb_seconds),
        )
        .where(rollup.period_start >= start, rollup.period_start < period.end,
               support.row_scope(rollup, viewer, spec))
        .group_by(rollup.user, rollup.account, rollup.partition)
    ).all()  # fmt: skip
    for user, account, partition, *values in sums:
        row = _group(out.groups, (user, account, partition))
        row.started += int(values[0] or 0)
        row.cpu_seconds += int(values[1] or 0)
        row.cpu_time_seconds += float(values[2] or 0)
        row.wall_seconds += int(values[3] or 0)
        row.requested_seconds += int(values[4] or 0)
        row.gpu_seconds += int(values[5] or 0)
        row.memory_mb_seconds += int(values[6] or 0)

    in_period = (UsageJob.end_time >= period.start, UsageJob.end_time < period.end,
                 support.row_scope(UsageJob, viewer, spec))  # fmt: skip
    short = settings.report_short_job_minutes * 60
    counted = session.execute(
        select(UsageJob.user, UsageJob.account, UsageJob.partition, func.count())
        .where(*in_period, UsageJob.start_time.is_not(None), UsageJob.elapsed_seconds < short)
        .group_by(UsageJob.user, UsageJob.account, UsageJob.partition)
    ).all()  # fmt: skip
    for user, account, partition, count in counted:
        _group(out.groups, (user, account, partition)).short_jobs += int(count)

    gpu_jobs = session.execute(
        select(UsageJob.job_id, UsageJob.user, UsageJob.account, UsageJob.partition,
               UsageJob.gpus, UsageJob.elapsed_seconds, UsageJob.start_time,
               UsageJob.end_time)
        .where(*in_period, UsageJob.gpus > 0, UsageJob.elapsed_seconds > 0)
        .order_by(UsageJob.end_time.desc())
    ).all()  # fmt: skip
    if not gpu_jobs:
        return out
    nudged = set(
        session.scalars(
            select(GpuIdleNudge.job_id).where(
                GpuIdleNudge.nudged_at >= period.start - _NUDGE_LOOKBACK,
                GpuIdleNudge.nudged_at < period.end,
            )
        ).all()
    )
    idle = {str(j.job_id) for j in gpu_jobs if str(j.job_id) in nudged}
    unchecked = [j for j in gpu_jobs if str(j.job_id) not in idle and j.start_time is not None]
    if settings.prometheus_url and unchecked:
        batch = unchecked[: settings.report_gpu_prometheus_jobs]
        windows = [
            prometheus.JobRun(
                j.job_id, j.end_time - timedelta(seconds=j.elapsed_seconds), j.end_time
            )
            for j in batch
        ]
        try:
            means = prometheus.gpu_means(settings, windows, factory or prometheus.factory_of({}))
        except prometheus.NotAnswered as exc:
            out.prometheus_problem = str(exc)
        else:
            out.prometheus_checked = len(batch)
            threshold = settings.gpu_idle_threshold_percent
            found = {str(i) for i, mean in means.items() if mean < threshold}
            out.idle_by_prometheus = len(found)
            idle |= found
    for j in gpu_jobs:
        if str(j.job_id) in idle:
            row = _group(out.groups, (j.user, j.account, j.partition))
            row.wasted_gpu_seconds += j.gpus * j.elapsed_seconds
    return out


def by(groups: Groups, dimension: str) -> dict[str, Figures]:
    index = DIMENSIONS.index(dimension)
    out: dict[str, Figures] = defaultdict(Figures)
    for key, figures in groups.items():
        out[key[index]].add(figures)
    return dict(out)


def total(groups: Groups) -> Figures:
    out = Figures()
    for figures in groups.values():
        out.add(figures)
    return out


def _rows(named: dict[str, Figures]) -> list[list[Cell]]:
    return [[name or "-", *named[name].cells()] for name in sorted(named)]


def _overview(t: dict[str, str], now: Figures, before: Figures | None) -> Table:
    def rows(figures: Figures) -> list[list[Cell]]:
        return [
            [t[name], value] for (name, _), value in zip(MEASURES, figures.cells(), strict=True)
        ]

    return Table(
        title=t["overview"],
        columns=[Column(key="measure", title=t["measure"]),
                 Column(key="value", title=t["value"], type="number")],
        rows=rows(now), key_columns=["measure"],
        previous=rows(before) if before is not None else None,
    )  # fmt: skip


def build(
    spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
) -> ReportDocument:
    """The efficiency report of ``spec`` as ``viewer`` may see it (blocking)."""
    settings = support.settings_of(context)
    lang = spec.language
    t = TEXT[lang]
    previous = support.previous_of(spec)
    factory = prometheus.factory_of(context.parts)
    now = measure(session, spec, viewer, spec.period, settings, factory)
    before = measure(session, spec, viewer, previous, settings, factory) if previous else None
    store = support.store_source(session, spec.period, lang)
    sources = [store]
    if previous is not None:
        sources.append(support.store_source(session, previous, lang))
    sources.append(Source(name=t["nudges"], window=spec.period))
    if now.prometheus_checked:
        sources.append(prometheus.source(settings, spec.period, lang))
    if now.prometheus_checked:
        threshold = f"{settings.gpu_idle_threshold_percent:g}"
        prom = t["prom_used"].format(count=now.prometheus_checked, threshold=threshold)
    elif now.prometheus_problem:
        prom = t["prom_failed"].format(reason=now.prometheus_problem)
    elif not settings.prometheus_url:
        prom = t["prom_off"]
    else:
        prom = ""
    overview = Section(
        title=t["overview"],
        text=t["intro"].format(minutes=settings.report_short_job_minutes),
        tables=[_overview(t, total(now.groups), total(before.groups) if before else None)],
    )
    overview.tables[0].source = store
    sections = [overview]
    columns = [Column(key=name, title=t[name], type=kind) for name, kind in MEASURES]
    for dimension in DIMENSIONS:
        named = by(now.groups, dimension)
        table = Table(
            title=t[f"by_{dimension}"],
            columns=[Column(key=dimension, title=t[dimension]), *columns],
            rows=_rows(named), key_columns=[dimension],
            previous=_rows(by(before.groups, dimension)) if before else None,
            source=store,
        )  # fmt: skip
        section = Section(title=t[f"by_{dimension}"], tables=[table])
        if dimension == "partition" and named:
            labels = sorted(named)
            section.charts.append(Chart(
                title=t["chart"], kind="bar", labels=[x or "-" for x in labels], unit="%",
                series=[Series(name=t["cpu_efficiency"], values=[
                    _percent(support.ratio(named[x].cpu_time_seconds, named[x].cpu_seconds))
                    for x in labels])],
                source=store,
            ))  # fmt: skip
        sections.append(section)
    gpu_text = t["gpu_note"].format(
        threshold=f"{settings.gpu_idle_threshold_percent:g}",
        window=f"{settings.gpu_idle_minutes:g}", prom=prom,
    )  # fmt: skip
    sections[0].text = f"{sections[0].text}\n{gpu_text}\n{t['memory_note']}"
    return ReportDocument(
        kind="efficiency", title=t["title"], language=lang,
        generated_at=context.now, period=spec.period, previous_period=previous,
        scope=support.scope_text(viewer, spec, lang), sources=sources, sections=sections,
    )  # fmt: skip


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)
