"""The words of the usage report kinds, in English and Korean.

Report text is built outside any request (a schedule's worker), so it does not go
through the web pages' gettext catalog; like the renderers' labels
(``render/common.py``), it is a small typed table, one entry per phrase, checked by a
test to have both languages. Names (users, accounts, partitions) are never translated.
"""

from __future__ import annotations

from typing import Final

from hpcportal.services.reports.document import Language

TEXT: Final[dict[str, dict[Language, str]]] = {
    # titles and sections
    "job_usage.title": {"en": "Job usage", "ko": "작업 사용량"},
    "custom.title": {"en": "Custom usage report", "ko": "사용자 정의 사용량 보고서"},
    "section.summary": {"en": "Summary", "ko": "요약"},
    "section.by_user": {"en": "By user", "ko": "사용자별"},
    "section.by_account": {"en": "By account", "ko": "계정별"},
    "section.by_partition": {"en": "By partition", "ko": "파티션별"},
    "section.by_state": {"en": "Jobs by state", "ko": "상태별 작업"},
    "section.over_time": {"en": "Over time", "ko": "기간별 추이"},
    "section.custom": {"en": "Figures", "ko": "수치"},
    "summary.text": {
        "en": "Jobs that ended in the period, from the portal's usage store (read from "
        "Slurm accounting). A job counts in the hour it ended; CPU hours are allocated "
        "CPUs times elapsed time, as sacct's CPUTime.",
        "ko": "기간 안에 종료된 작업을 포털의 사용량 저장소(Slurm 회계 기록에서 수집)에서 "
        "집계했습니다. 작업은 종료된 시각에 집계되며, CPU 시간은 sacct의 CPUTime처럼 "
        "할당된 CPU 수에 실행 시간을 곱한 값입니다.",
    },
    # dimensions
    "dim.user": {"en": "User", "ko": "사용자"},
    "dim.account": {"en": "Account", "ko": "계정"},
    "dim.partition": {"en": "Partition", "ko": "파티션"},
    "dim.qos": {"en": "QoS", "ko": "QoS"},
    "dim.size_bucket": {"en": "Job size (CPUs)", "ko": "작업 크기(CPU)"},
    "dim.time": {"en": "Time", "ko": "시간"},
    "dim.state": {"en": "State", "ko": "상태"},
    "dim.measure": {"en": "Measure", "ko": "항목"},
    "col.value": {"en": "Value", "ko": "값"},
    # measures
    "m.jobs": {"en": "Jobs", "ko": "작업 수"},
    "m.started": {"en": "Started jobs", "ko": "시작된 작업"},
    "m.cpu_hours": {"en": "CPU hours", "ko": "CPU 시간"},
    "m.gpu_hours": {"en": "GPU hours", "ko": "GPU 시간"},
    "m.memory_gb_hours": {"en": "Memory (GB·h)", "ko": "메모리(GB·시간)"},
    "m.wall_hours": {"en": "Wall time (h)", "ko": "실행 시간(시간)"},
    "m.wait_hours": {"en": "Wait time (h)", "ko": "대기 시간(시간)"},
    "m.requested_hours": {"en": "Requested time (h)", "ko": "요청 시간(시간)"},
    "m.cpu_time_hours": {"en": "CPU time used (h)", "ko": "사용한 CPU 시간(시간)"},
    "m.mean_wait_minutes": {"en": "Mean wait (min)", "ko": "평균 대기(분)"},
    "m.mean_wall_minutes": {"en": "Mean wall time (min)", "ko": "평균 실행 시간(분)"},
    "m.cpu_efficiency": {"en": "CPU efficiency", "ko": "CPU 효율"},
    "m.wall_accuracy": {"en": "Wall-time accuracy", "ko": "실행 시간 정확도"},
    "m.completed": {"en": "Completed", "ko": "완료"},
    "m.failed": {"en": "Failed", "ko": "실패"},
    "m.timed_out": {"en": "Timed out", "ko": "시간 초과"},
    "m.cancelled": {"en": "Cancelled", "ko": "취소"},
    "m.other": {"en": "Other", "ko": "기타"},
    # charts
    "chart.cpu_over_time": {"en": "CPU hours over time", "ko": "기간별 CPU 시간"},
    "chart.gpu_over_time": {"en": "GPU hours over time", "ko": "기간별 GPU 시간"},
    "chart.cpu_by_account": {"en": "CPU hours by account", "ko": "계정별 CPU 시간"},
    "chart.jobs_by_state": {"en": "Jobs by state", "ko": "상태별 작업"},
    "series.period": {"en": "This period", "ko": "이번 기간"},
    "series.previous": {"en": "Previous period", "ko": "이전 기간"},
    "unit.hours": {"en": "hours", "ko": "시간"},
    "unit.jobs": {"en": "jobs", "ko": "개"},
    # sources and scope
    "source.usage": {
        "en": "Usage store (Slurm accounting, sacct)",
        "ko": "사용량 저장소(Slurm 회계, sacct)",
    },
    "source.complete_until": {
        "en": "Jobs counted in the hour they ended; complete up to {until} UTC.",
        "ko": "작업은 종료된 시각에 집계됨; {until} UTC까지 반영됨.",
    },
    "source.empty": {
        "en": "Nothing has been ingested yet: the figures are empty.",
        "ko": "아직 수집된 작업이 없어 수치가 비어 있습니다.",
    },
    "note.incomplete": {
        "en": "The usage store is complete up to {until} UTC only; "
        "jobs that ended later are not counted yet.",
        "ko": "사용량 저장소는 {until} UTC까지만 반영되어, "
        "그 이후 종료된 작업은 아직 포함되지 않았습니다.",
    },
    "scope.all": {"en": "all", "ko": "전체"},
    "scope.account": {"en": "account {names}", "ko": "계정 {names}"},
    "scope.user": {"en": "user {names}", "ko": "사용자 {names}"},
    "scope.and": {"en": " and ", "ko": ", "},
}


def t(language: Language, key: str, **values: str) -> str:
    """The phrase ``key`` in ``language`` (English if it has none), with ``values``."""
    entry = TEXT[key]
    phrase = entry.get(language) or entry["en"]
    return phrase.format(**values) if values else phrase
