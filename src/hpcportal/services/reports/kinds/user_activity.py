"""The user activity report: logins, job submissions and interactive sessions per user
and per day, against the period before.

Where each figure comes from:

- Logins: audit entries ``auth.login`` (``LOGIN_ACTIONS``). The report says so when
  the audit log holds none at all, since a portal that does not audit logins would
  otherwise show zeros as if nobody logged in.
- Submissions: audit entries ``job.submit`` (the API, the pages, templates), counted
  as accepted (``ok``) and refused; what Slurm ran is in the job-usage report.
- Interactive sessions: the ``interactive_sessions`` table (launches by
  ``created_at``; hours from start to end, or until the period's end while running).

Days are calendar days in the spec's time zone. Whose rows: ``support.visible_users``
(an admin everyone, a coordinator the users of their accounts, anyone else themselves).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from hpcportal.db.models import AuditEntry, InteractiveSession
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
from hpcportal.services.reports.kinds import BuildContext, support
from hpcportal.services.reports.spec import ReportSpec, Viewer

LOGIN_ACTIONS = ("auth.login",)
SUBMIT_ACTIONS = ("job.submit",)
#: Rows read per round trip (a year of audit entries is streamed, never all held).
_BATCH = 5000

TEXT: dict[Language, dict[str, str]] = {
    "en": {
        "title": "User activity report",
        "overview": "Overview",
        "measure": "Measure",
        "value": "Value",
        "by_user": "Activity by user",
        "by_day": "Activity by day",
        "user": "User",
        "day": "Day",
        "logins": "Logins",
        "submissions": "Submissions",
        "refused": "Refused submissions",
        "sessions": "Interactive sessions",
        "session_hours": "Session hours",
        "active_users": "Active users",
        "intro": "Logins and submissions from the portal's audit log; interactive "
        "sessions from the portal's session records. Days in {zone}.",
        "no_logins": "The audit log holds no login entries, so logins are not known (not zero).",
        "audit": "audit log",
        "sessions_source": "interactive sessions",
        "chart": "Activity by day",
    },
    "ko": {
        "title": "사용자 활동 보고서",
        "overview": "개요",
        "measure": "항목",
        "value": "값",
        "by_user": "사용자별 활동",
        "by_day": "일별 활동",
        "user": "사용자",
        "day": "날짜",
        "logins": "로그인",
        "submissions": "작업 제출",
        "refused": "거부된 제출",
        "sessions": "대화형 세션",
        "session_hours": "세션 시간",
        "active_users": "활동 사용자",
        "intro": "로그인과 작업 제출은 포털 감사 로그에서, 대화형 세션은 포털 세션 "
        "기록에서 가져왔습니다. 날짜 기준 시간대: {zone}.",
        "no_logins": "감사 로그에 로그인 기록이 없어 로그인 수를 알 수 없습니다 (0이 아님).",
        "audit": "감사 로그",
        "sessions_source": "대화형 세션 기록",
        "chart": "일별 활동",
    },
}

#: The per-user and per-day counters, in column order.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("logins", "integer"),
    ("submissions", "integer"),
    ("refused", "integer"),
    ("sessions", "integer"),
    ("session_hours", "hours"),
)


@dataclass
class Counts:
    logins: int = 0
    submissions: int = 0
    refused: int = 0
    sessions: int = 0
    session_hours: float = 0.0

    def cells(self) -> list[Cell]:
        return [getattr(self, name) for name, _ in COUNTERS]


@dataclass
class Activity:
    users: dict[str, Counts]
    days: dict[date, Counts]
    active: dict[date, set[str]]


def measure(session: Session, period: Period, users: set[str] | None, zone: ZoneInfo) -> Activity:
    """Counts of one period by user and by local day."""
    out = Activity(defaultdict(Counts), defaultdict(Counts), defaultdict(set))

    def day(moment: datetime) -> date:
        return moment.astimezone(zone).date()

    audit = select(AuditEntry.at, AuditEntry.username, AuditEntry.action, AuditEntry.result)
    audit = audit.where(AuditEntry.at >= period.start, AuditEntry.at < period.end,
                        AuditEntry.action.in_([*LOGIN_ACTIONS, *SUBMIT_ACTIONS]))  # fmt: skip
    if users is not None:
        audit = audit.where(AuditEntry.username.in_(sorted(users)))
    for at, user, action, result in session.execute(audit.execution_options(yield_per=_BATCH)):
        counts, daily = out.users[user], out.days[day(at)]
        out.active[day(at)].add(user)
        if action in LOGIN_ACTIONS:
            if result == "ok":
                counts.logins += 1
                daily.logins += 1
        elif result == "ok":
            counts.submissions += 1
            daily.submissions += 1
        else:
            counts.refused += 1
            daily.refused += 1

    s = InteractiveSession
    sessions = select(s.username, s.created_at, s.started_at, s.ended_at, s.ends_at).where(
        s.created_at < period.end,
        or_(s.created_at >= period.start, s.ended_at.is_(None), s.ended_at > period.start),
    )
    if users is not None:
        sessions = sessions.where(s.username.in_(sorted(users)))
    for user, created, started, ended, ends in session.execute(sessions):
        if created >= period.start:
            out.users[user].sessions += 1
            out.days[day(created)].sessions += 1
            out.active[day(created)].add(user)
        if started is not None:
            first = max(started, period.start)
            last = min(ended or ends or period.end, period.end)
            if last > first:
                hours = (last - first).total_seconds() / 3600
                out.users[user].session_hours += hours
                out.days[day(first)].session_hours += hours
    return out


def _total(activity: Activity) -> Counts:
    total = Counts()
    for counts in activity.users.values():
        for name, _ in COUNTERS:
            setattr(total, name, getattr(total, name) + getattr(counts, name))
    return total


def _overview(t: dict[str, str], now: Activity, before: Activity | None) -> Table:
    def rows(activity: Activity) -> list[list[Cell]]:
        total = _total(activity)
        active = len({u for users in activity.active.values() for u in users})
        return [*([t[name], value] for (name, _), value in zip(COUNTERS, total.cells(),
                                                                strict=True)),
                [t["active_users"], active]]  # fmt: skip

    return Table(
        title=t["overview"],
        columns=[Column(key="measure", title=t["measure"]),
                 Column(key="value", title=t["value"], type="number")],
        rows=rows(now), key_columns=["measure"],
        previous=rows(before) if before is not None else None,
    )  # fmt: skip


def _days(period: Period, zone: ZoneInfo) -> list[date]:
    first = period.start.astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def build(
    spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
) -> ReportDocument:
    """The user activity report of ``spec`` as ``viewer`` may see it (blocking)."""
    lang = spec.language
    t = TEXT[lang]
    zone = ZoneInfo(spec.time_zone)
    users = support.visible_users(session, viewer, spec, context.adapter)
    previous = support.previous_of(spec)
    now = measure(session, spec.period, users, zone)
    before = measure(session, previous, users, zone) if previous else None
    audit = Source(name=t["audit"], window=spec.period)
    sessions = Source(name=t["sessions_source"], window=spec.period)
    text = t["intro"].format(zone=spec.time_zone)
    if not session.scalar(select(exists().where(AuditEntry.action.in_(LOGIN_ACTIONS)))):
        text = f"{text}\n{t['no_logins']}"
    counter_columns = [Column(key=name, title=t[name], type=kind) for name, kind in COUNTERS]

    def user_rows(activity: Activity) -> list[list[Cell]]:
        return [[user, *activity.users[user].cells()] for user in sorted(activity.users)]

    by_user = Table(
        title=t["by_user"],
        columns=[Column(key="user", title=t["user"]), *counter_columns],
        rows=user_rows(now), key_columns=["user"],
        previous=user_rows(before) if before is not None else None, source=audit,
    )  # fmt: skip
    days = _days(spec.period, zone)
    day_rows: list[list[Cell]] = [
        [d, *now.days[d].cells(), len(now.active[d])] for d in days
    ]  # fmt: skip
    by_day = Table(
        title=t["by_day"],
        columns=[Column(key="day", title=t["day"], type="date"), *counter_columns,
                 Column(key="active_users", title=t["active_users"], type="integer")],
        rows=day_rows, key_columns=["day"], source=audit,
    )  # fmt: skip
    chart = Chart(
        title=t["chart"], kind="bar", labels=[d.isoformat() for d in days],
        series=[Series(name=t[name], values=[float(getattr(now.days[d], name)) for d in days])
                for name in ("logins", "submissions", "sessions")],
        source=audit,
    )  # fmt: skip
    return ReportDocument(
        kind="user_activity", title=t["title"], language=lang, generated_at=context.now,
        period=spec.period, previous_period=previous,
        scope=support.scope_text(viewer, spec, lang), sources=[audit, sessions],
        sections=[
            Section(title=t["overview"], text=text, tables=[_overview(t, now, before)]),
            Section(title=t["by_user"], tables=[by_user]),
            Section(title=t["by_day"], tables=[by_day], charts=[chart]),
        ],
    )  # fmt: skip
