"""The system performance report (admins only): how busy the partitions were and how
long nodes were unavailable, against the period before.

- Utilisation by partition over time: CPUs and GPUs allocated / total from the
  portal's own gauges as Prometheus kept them (``prometheus.partition_use``, the
  cluster-history queries). Without Prometheus the section says so; nothing is guessed
  from today's snapshot.
- Node availability: the time each node was down or drained, from slurmdbd's node
  events (``SlurmAdapter.node_events``, ``sacctmgr show event``), which hold drains set
  outside the portal too; an event still open counts until the period's end (or now).
- Drains, downs, resumes and reboots applied through the portal (``admin_changes``),
  with who and why.

The whole cluster is in it, so anyone but an admin or Slurm operator is refused
(``Forbidden``, 403) before anything is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.db.models import AdminChange
from hpcportal.errors import SlurmError
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
from hpcportal.slurm.models import NodeEvent

#: Rows of portal changes listed at most.
MOST_CHANGES = 500

TEXT: dict[Language, dict[str, str]] = {
    "en": {
        "title": "System performance report",
        "utilisation": "Utilisation by partition",
        "no_history": "No history: {reason}.",
        "not_configured": "Prometheus not configured",
        "partition": "Partition",
        "cpu_mean": "Mean CPU utilisation",
        "cpu_peak": "Peak CPU utilisation",
        "gpu_mean": "Mean GPU utilisation",
        "gpu_peak": "Peak GPU utilisation",
        "cpu_chart": "CPUs allocated / total by partition",
        "gpu_chart": "GPUs allocated / total by partition",
        "availability": "Node availability",
        "availability_text": "Time each node was down or drained in the period, from "
        "slurmdbd's node events; nodes without events were available throughout.",
        "node": "Node",
        "down_hours": "Hours down",
        "drained_hours": "Hours drained",
        "events": "Events",
        "unavailable": "Unavailable share",
        "no_events": "Node events could not be read: {reason}.",
        "events_source": "slurmdbd node events (sacctmgr show event)",
        "portal": "Node changes through the portal",
        "at": "When",
        "who": "Who",
        "action": "Action",
        "nodes": "Nodes",
        "reason": "Reason",
        "changes_source": "portal admin changes",
        "gauges": "portal gauges hpcportal_slurm_partition_cpus/gpus",
    },
    "ko": {
        "title": "시스템 성능 보고서",
        "utilisation": "파티션별 사용률",
        "no_history": "기록 없음: {reason}.",
        "not_configured": "Prometheus가 설정되지 않았습니다",
        "partition": "파티션",
        "cpu_mean": "평균 CPU 사용률",
        "cpu_peak": "최대 CPU 사용률",
        "gpu_mean": "평균 GPU 사용률",
        "gpu_peak": "최대 GPU 사용률",
        "cpu_chart": "파티션별 할당/전체 CPU",
        "gpu_chart": "파티션별 할당/전체 GPU",
        "availability": "노드 가용성",
        "availability_text": "기간 중 각 노드가 다운 또는 드레인된 시간 (slurmdbd 노드 "
        "이벤트). 이벤트가 없는 노드는 기간 내내 사용 가능했습니다.",
        "node": "노드",
        "down_hours": "다운 시간",
        "drained_hours": "드레인 시간",
        "events": "이벤트",
        "unavailable": "사용 불가 비율",
        "no_events": "노드 이벤트를 읽을 수 없습니다: {reason}.",
        "events_source": "slurmdbd 노드 이벤트 (sacctmgr show event)",
        "portal": "포털에서 적용한 노드 변경",
        "at": "시각",
        "who": "누가",
        "action": "작업",
        "nodes": "노드",
        "reason": "사유",
        "changes_source": "포털 관리자 변경 기록",
        "gauges": "포털 게이지 hpcportal_slurm_partition_cpus/gpus",
    },
}


def _clip(event: NodeEvent, period: Period, now: datetime) -> tuple[datetime, datetime] | None:
    """The part of ``event`` inside ``period`` (an open event lasts until now)."""
    start = max(event.start, period.start)
    end = min(event.end or now, period.end)
    return (start, end) if end > start else None


def _union_seconds(spans: Sequence[tuple[datetime, datetime]]) -> float:
    total, last_end = 0.0, None
    for start, end in sorted(spans):
        if last_end is not None and start < last_end:
            start = last_end
        if end > start:
            total += (end - start).total_seconds()
            last_end = end if last_end is None else max(last_end, end)
    return total


def availability(events: Sequence[NodeEvent], period: Period, now: datetime) -> list[list[Cell]]:
    """One row per node with an event in ``period``: hours down, hours drained, events
    and the share of the period it was unavailable (overlaps counted once)."""
    length = (period.end - period.start).total_seconds()
    nodes: dict[str, list[tuple[NodeEvent, tuple[datetime, datetime]]]] = {}
    for event in events:
        span = _clip(event, period, now)
        if span is not None:
            nodes.setdefault(event.node, []).append((event, span))
    rows: list[list[Cell]] = []
    for node in sorted(nodes):
        spans = nodes[node]
        drained = sum((s[1] - s[0]).total_seconds() for e, s in spans if e.drained)
        down = sum((s[1] - s[0]).total_seconds() for e, s in spans if not e.drained)
        unavailable = _union_seconds([s for _, s in spans])
        rows.append([node, down / 3600, drained / 3600, len(spans),
                     support.ratio(unavailable, length)])  # fmt: skip
    return rows


def _utilisation(t: dict[str, str], spec: ReportSpec, context: BuildContext,
                 previous: Period | None) -> Section:  # fmt: skip
    settings = support.settings_of(context)
    section = Section(title=t["utilisation"])
    if not settings.prometheus_url:
        section.text = t["no_history"].format(reason=t["not_configured"])
        return section
    try:
        factory = prometheus.factory_of(context.parts)
        now = prometheus.partition_use(settings, spec.period, factory)
        before = prometheus.partition_use(settings, previous, factory) if previous else None
    except prometheus.NotAnswered as exc:
        section.text = t["no_history"].format(reason=str(exc))
        return section
    source = prometheus.source(settings, spec.period, spec.language)
    source.detail = f"{source.detail}; {t['gauges']}"

    def rows(use: dict[str, prometheus.PartitionUse]) -> list[list[Cell]]:
        return [[part, _mean(u.cpu), _peak(u.cpu), _mean(u.gpu), _peak(u.gpu)]
                for part, u in sorted(use.items())]  # fmt: skip

    section.tables.append(Table(
        title=t["utilisation"],
        columns=[Column(key="partition", title=t["partition"]),
                 *(Column(key=k, title=t[k], type="percent")
                   for k in ("cpu_mean", "cpu_peak", "gpu_mean", "gpu_peak"))],
        rows=rows(now), key_columns=["partition"],
        previous=rows(before) if before is not None else None, source=source,
    ))  # fmt: skip
    stamps = next((u.timestamps for u in now.values()), [])
    labels = [datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d %H:%M") for s in stamps]
    for key, pick in (("cpu_chart", "cpu"), ("gpu_chart", "gpu")):
        series = [Series(name=part, values=[None if v is None else round(v * 100, 2)
                                            for v in getattr(u, pick)])
                  for part, u in sorted(now.items())
                  if any(v is not None for v in getattr(u, pick))]  # fmt: skip
        if series:
            section.charts.append(Chart(title=t[key], kind="line", labels=labels,
                                        series=series, unit="%", source=source))  # fmt: skip
    return section


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _peak(values: list[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def _availability(t: dict[str, str], spec: ReportSpec, context: BuildContext,
                  previous: Period | None) -> Section:  # fmt: skip
    section = Section(title=t["availability"], text=t["availability_text"])
    adapter: Any = context.adapter
    first = min(spec.period.start, previous.start) if previous else spec.period.start
    try:
        if adapter is None:
            raise SlurmError("no Slurm adapter was given to the report")
        events = adapter.node_events(first, spec.period.end)
        cluster = adapter.cluster()
    except SlurmError as exc:
        section.text = t["no_events"].format(reason=getattr(exc, "message", None) or exc)
        return section
    release = str(cluster.release) if cluster.release is not None else None
    source = Source(name=t["events_source"], window=spec.period, slurm_release=release)
    section.tables.append(Table(
        title=t["availability"],
        columns=[Column(key="node", title=t["node"]),
                 Column(key="down_hours", title=t["down_hours"], type="hours"),
                 Column(key="drained_hours", title=t["drained_hours"], type="hours"),
                 Column(key="events", title=t["events"], type="integer"),
                 Column(key="unavailable", title=t["unavailable"], type="percent")],
        rows=availability(events, spec.period, context.now), key_columns=["node"],
        previous=availability(events, previous, context.now) if previous else None,
        source=source,
    ))  # fmt: skip
    return section


def _portal_changes(t: dict[str, str], session: Session, period: Period) -> Section:
    changes = session.scalars(
        select(AdminChange)
        .where(AdminChange.kind.like("node.%"), AdminChange.at >= period.start,
               AdminChange.at < period.end)
        .order_by(AdminChange.at)
        .limit(MOST_CHANGES)
    ).all()  # fmt: skip
    rows: list[list[Cell]] = [
        [c.at, c.username, c.kind.removeprefix("node."), c.target.removeprefix("node:"),
         c.reason or None]
        for c in changes
    ]  # fmt: skip
    return Section(title=t["portal"], tables=[Table(
        title=t["portal"],
        columns=[Column(key="at", title=t["at"], type="datetime"),
                 Column(key="who", title=t["who"]), Column(key="action", title=t["action"]),
                 Column(key="nodes", title=t["nodes"]), Column(key="reason", title=t["reason"])],
        rows=rows, source=Source(name=t["changes_source"], window=period),
    )])  # fmt: skip


def build(
    spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
) -> ReportDocument:
    """The system performance report of ``spec`` (admins only; blocking: Prometheus
    and ``sacctmgr``)."""
    support.admins_only(viewer, "system performance")
    lang = spec.language
    t = TEXT[lang]
    previous = support.previous_of(spec)
    utilisation = _utilisation(t, spec, context, previous)
    context.progress(40)
    nodes = _availability(t, spec, context, previous)
    context.progress(80)
    changes = _portal_changes(t, session, spec.period)
    sources = [s for table in (*utilisation.tables, *nodes.tables, *changes.tables)
               if (s := table.source) is not None]  # fmt: skip
    return ReportDocument(
        kind="system", title=t["title"], language=lang, generated_at=context.now,
        period=spec.period, previous_period=previous,
        scope=support.scope_text(viewer, spec, lang), sources=sources,
        sections=[utilisation, nodes, changes],
    )  # fmt: skip
