"""A synthetic job-usage document of any size, in English or Korean.

Not a report of anything: the renderers' benchmark (``bench/reports.py`` via
``render.timed``) and the documentation's screenshot need a document of a known shape
and size without a usage store behind it. Figures are drawn from a seeded generator,
so the same arguments give the same document.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

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

_KOREAN_NAMES = ["김철수", "이영희", "박민준", "최지우", "정서연", "강하준", "조수아", "윤도윤"]
_ENGLISH_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
_ACCOUNTS = ["physics", "chemistry", "biology", "astro"]
_PARTITIONS = ["cpu", "gpu", "bigmem"]

_WORDS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "Job usage report",
        "users": "Usage by user",
        "users_text": "CPU and GPU hours of the jobs that ended in the period, per user.",
        "per_user": "Users",
        "days": "Usage by day",
        "per_day": "Days",
        "user": "User",
        "account": "Account",
        "day": "Day",
        "jobs": "Jobs",
        "cpu": "CPU hours",
        "gpu": "GPU hours",
        "wait": "Mean wait",
        "eff": "CPU efficiency",
        "last": "Last job ended",
        "chart_day": "CPU hours per day by partition",
        "chart_account": "CPU hours by account",
        "hours": "hours",
        "store": "usage store",
        "scope": "all",
    },
    "ko": {
        "title": "작업 사용량 보고서",
        "users": "사용자별 사용량",
        "users_text": "기간 안에 끝난 작업의 사용자별 CPU 및 GPU 시간입니다.",
        "per_user": "사용자",
        "days": "일별 사용량",
        "per_day": "일",
        "user": "사용자",
        "account": "계정",
        "day": "날짜",
        "jobs": "작업 수",
        "cpu": "CPU 시간",
        "gpu": "GPU 시간",
        "wait": "평균 대기",
        "eff": "CPU 효율",
        "last": "마지막 작업 종료",
        "chart_day": "파티션별 일일 CPU 시간",
        "chart_account": "계정별 CPU 시간",
        "hours": "시간",
        "store": "사용량 저장소",
        "scope": "전체",
    },
}


def user_names(language: Language, count: int) -> list[str]:
    """``count`` distinct names: the base names, then numbered ones (김철수2, alice2…)."""
    base = _KOREAN_NAMES if language == "ko" else _ENGLISH_NAMES
    return [
        base[i % len(base)] + (str(i // len(base) + 1) if i >= len(base) else "")
        for i in range(count)
    ]


def synthetic_document(
    language: Language = "en", *, users: int = 8, days: int = 30, seed: int = 14
) -> ReportDocument:
    """A job-usage document: a per-user table with the period before, a per-day table,
    a line chart per partition and a bar chart per account."""
    w, rng = _WORDS[language], random.Random(seed)  # noqa: S311 (made-up figures, no secret)
    end = datetime(2026, 12, 1, tzinfo=UTC)
    period = Period(start=end - timedelta(days=days), end=end)
    previous = Period(start=period.start - timedelta(days=days), end=period.start)
    source = Source(name=w["store"], window=period, slurm_release="24.11")
    names = user_names(language, users)
    columns = [
        Column(key="user", title=w["user"], type="text"),
        Column(key="account", title=w["account"], type="text"),
        Column(key="jobs", title=w["jobs"], type="integer"),
        Column(key="cpu_hours", title=w["cpu"], type="hours"),
        Column(key="gpu_hours", title=w["gpu"], type="hours"),
        Column(key="wait", title=w["wait"], type="seconds"),
        Column(key="cpu_eff", title=w["eff"], type="percent"),
        Column(key="last_end", title=w["last"], type="datetime"),
    ]

    def user_row(name: str, account: str) -> list[Cell]:
        jobs = rng.randint(1, 4000)
        return [
            name,
            account,
            jobs,
            round(jobs * rng.uniform(0.5, 64), 2),
            round(jobs * rng.uniform(0, 4), 2) if rng.random() < 0.4 else 0.0,
            rng.randint(5, 20000),
            round(rng.uniform(0.05, 0.99), 4),
            end - timedelta(seconds=rng.randint(60, days * 86400)),
        ]

    accounts = [_ACCOUNTS[i % len(_ACCOUNTS)] for i in range(users)]
    rows = [user_row(n, a) for n, a in zip(names, accounts, strict=True)]
    before = [user_row(n, a) for n, a in zip(names, accounts, strict=True) if rng.random() < 0.9]
    per_user = Table(
        title=w["per_user"],
        columns=columns,
        rows=rows,
        key_columns=["user", "account"],
        previous=before,
        source=source,
    )
    day_list = [(period.start + timedelta(days=i)).date() for i in range(days)]
    by_partition = {p: [round(rng.uniform(100, 5000), 1) for _ in day_list] for p in _PARTITIONS}
    per_day = Table(
        title=w["per_day"],
        columns=[
            Column(key="day", title=w["day"], type="date"),
            Column(key="jobs", title=w["jobs"], type="integer"),
            *[Column(key=p, title=f"{w['cpu']} ({p})", type="hours") for p in _PARTITIONS],
        ],
        rows=[
            [d, rng.randint(10, 9000), *[by_partition[p][i] for p in _PARTITIONS]]
            for i, d in enumerate(day_list)
        ],
        source=source,
    )
    account_hours = {a: 0.0 for a in _ACCOUNTS}
    for row, account in zip(rows, accounts, strict=True):
        hours = row[3]
        account_hours[account] += hours if isinstance(hours, float) else 0.0
    return ReportDocument(
        kind="job_usage",
        title=w["title"],
        language=language,
        generated_at=end + timedelta(hours=2, minutes=5),
        period=period,
        previous_period=previous,
        scope=w["scope"],
        sources=[source],
        sections=[
            Section(
                title=w["users"],
                text=w["users_text"],
                tables=[per_user],
                charts=[
                    Chart(
                        title=w["chart_account"],
                        kind="bar",
                        labels=list(account_hours),
                        series=[Series(name=w["cpu"], values=list(account_hours.values()))],
                        unit=w["hours"],
                        source=source,
                    )
                ],
            ),
            Section(
                title=w["days"],
                tables=[per_day],
                charts=[
                    Chart(
                        title=w["chart_day"],
                        kind="line",
                        labels=[_day_label(d) for d in day_list],
                        series=[Series(name=p, values=by_partition[p]) for p in _PARTITIONS],
                        unit=w["hours"],
                        source=source,
                    )
                ],
            ),
        ],
    )


def _day_label(day: date) -> str:
    return day.strftime("%m-%d")
