"""Every text a person's channel receives, in the channel's language (en, ko).

One module so a translator finds them all: the event messages routed from the bell's
notifications, the verification code, the test message and the digest. Each builder
returns a ``Text``: a subject, plain text, and a simple HTML body for email (Slack and
webhooks use the subject and the plain text). The page strings are in the .po
catalog; these are here because they are built in a background transaction, for a
channel whose language is stored with it, not for a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

PREFIX = "[HPC portal]"


@dataclass(frozen=True, slots=True)
class Text:
    subject: str
    body_text: str
    body_html: str


def _lang(language: str) -> str:
    return "ko" if language == "ko" else "en"


def _html(paragraphs: list[str]) -> str:
    inner = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs if p)
    return f'<!doctype html><html><body style="font-family:sans-serif">{inner}</body></html>'


def _text(subject: str, paragraphs: list[str]) -> Text:
    return Text(
        f"{PREFIX} {subject}", "\n\n".join(p for p in paragraphs if p) + "\n", _html(paragraphs)
    )


#: A title per subscription event (also the page's and the CLI's names of the events).
TITLES: dict[str, dict[str, str]] = {
    "job_started": {"en": "Job started", "ko": "작업 시작"},
    "job_finished": {"en": "Job completed", "ko": "작업 완료"},
    "job_failed": {"en": "Job failed", "ko": "작업 실패"},
    "job_timed_out": {"en": "Job timed out", "ko": "작업 시간 초과"},
    "job_requeued": {"en": "Job requeued", "ko": "작업 재대기"},
    "job_held": {"en": "Job held", "ko": "작업 보류"},
    "session_ready": {"en": "Interactive session ready", "ko": "대화형 세션 준비됨"},
    "session_ending": {"en": "Interactive session ending soon", "ko": "대화형 세션 곧 종료"},
    "idle_gpu": {"en": "GPUs idle", "ko": "GPU 유휴"},
    "disk_alert": {"en": "Disk alert", "ko": "디스크 경고"},
    "report_ready": {"en": "Report ready", "ko": "보고서 준비됨"},
    "admin_alert": {"en": "Cluster alert", "ko": "클러스터 경고"},
}

_KO_JOB: dict[str, str] = {
    "job_started": '작업 "{name}" ({job_id})이(가) 시작되었습니다.',
    "job_finished": '작업 "{name}" ({job_id})이(가) 완료되었습니다.',
    "job_failed": '작업 "{name}" ({job_id})이(가) 실패했습니다.',
    "job_timed_out": '작업 "{name}" ({job_id})이(가) 시간 제한에 도달하여 중지되었습니다.',
    "job_requeued": '작업 "{name}" ({job_id})이(가) 다시 대기열에 들어갔습니다.',
    "job_held": '작업 "{name}" ({job_id})이(가) 보류되었습니다.',
}

_FOOTER = {
    "en": "You receive this because you subscribed to it on the portal (Settings > Notifications).",
    "ko": "포털에서 이 알림을 구독했기 때문에 받으셨습니다 (설정 > 알림).",
}


def title(event: str, language: str) -> str:
    return TITLES.get(event, {}).get(_lang(language), event)


def event_message(event: str, language: str, english_body: str, params: dict[str, Any]) -> Text:
    """The message for one routed event. English reuses the bell's own sentence;
    Korean builds job sentences from the event's parameters and otherwise shows the
    English details under a Korean title (alert texts come from Alertmanager)."""
    lang = _lang(language)
    head = title(event, lang)
    body = english_body
    job_id = params.get("job_id")
    if job_id is not None:
        head = f"{head}: {params.get('job_name') or ''} ({job_id})"
    if lang == "ko" and event in _KO_JOB:
        body = _KO_JOB[event].format(name=params.get("job_name") or "", job_id=job_id or "")
        code = params.get("exit_code")
        if event == "job_failed" and code:
            body += f" 종료 코드: {code}."
    return _text(head, [body, _FOOTER[lang]])


def verification(language: str, code: str, channel_name: str, minutes: int) -> Text:
    if _lang(language) == "ko":
        return _text(
            "알림 채널 확인 코드",
            [
                f'"{channel_name}" 채널의 확인 코드: {code}',
                f"포털의 설정 > 알림에서 이 코드를 입력하세요. {minutes}분 후 만료됩니다.",
                "요청하지 않으셨다면 이 메시지를 무시하세요.",
            ],
        )
    return _text(
        "Confirm your notification channel",
        [
            f'The confirmation code for the channel "{channel_name}" is: {code}',
            f"Enter it under Settings > Notifications on the portal. It expires in "
            f"{minutes} minutes.",
            "If you did not ask for this, ignore this message.",
        ],
    )


def test_message(language: str, channel_name: str) -> Text:
    if _lang(language) == "ko":
        return _text(
            "테스트 메시지",
            [f'"{channel_name}" 채널로 보낸 테스트 메시지입니다. 알림이 여기로 전달됩니다.'],
        )
    return _text(
        "Test message",
        [
            f'This is a test message through the channel "{channel_name}". '
            "Notifications arrive here."
        ],
    )


def digest(language: str, items: list[tuple[str, str]]) -> Text:
    """Several held messages as one: ``items`` are (subject, plain text) pairs."""
    lang = _lang(language)
    head = f"{len(items)} notifications" if lang == "en" else f"알림 {len(items)}건"
    parts = [f"{subject.removeprefix(PREFIX).strip()}\n{text.strip()}" for subject, text in items]
    return _text(head, [*parts, _FOOTER[lang]])
