"""Generated reports: asked for, claimed, built, rendered, stored, announced, expired.

A request never builds a report: ``create`` stores a ``queued`` row per format and the
API answers 202 with its id. Every replica runs a ``ReportWorker`` that claims the
oldest queued row with one compare-and-set UPDATE (``state`` queued -> running, with a
claim token of its own), so any replica may generate and two never take the same row;
a row still ``running`` ``report_stale_minutes`` after its claim (its replica died)
is claimed again. Not leader-only: building and rendering a year's PDF is CPU work,
and spreading it over the replicas keeps the leader's Slurm refresh on time. Every
later write names the claim token, so a worker whose row was taken again changes
nothing.

The finished row keeps the rendered bytes in the database (no replica keeps files,
every replica serves every download) and the built ``ReportDocument`` as JSON, so
another format is rendered from it without asking the usage store again, and the
owner is told in the bell (a ``report`` notification, inserted if absent, pushed over
the live hub). Rows past ``expires_at`` are deleted by the leader (``expire``).

Who sees a report: its owner, and admins; anyone else is told it does not exist (404),
as for every hidden thing in this API.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.db.report_tables import GeneratedReport
from hpcportal.db.session import Database
from hpcportal.errors import NotFound
from hpcportal.lifecycle import PeriodicPart
from hpcportal.services.identity import Principal
from hpcportal.services.notifications import Delivery
from hpcportal.services.notifications.detector import deliveries_for, insert_new, new_row
from hpcportal.services.reports.document import ReportDocument

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
FORMATS = tuple(MEDIA_TYPES)
#: Notification events of a finished report (kind ``report``).
EVENT_DONE, EVENT_FAILED = "report_ready", "report_failed"


class Builder(Protocol):
    """Builds the document a spec asks for, as its owner may see it (blocking)."""

    def __call__(
        self, spec: dict[str, Any], owner: str, progress: Callable[[int], None]
    ) -> ReportDocument: ...


Renderer = Callable[[ReportDocument, str], bytes]


class ReportOut(BaseModel):
    """A generated report as the API lists it (never its bytes)."""

    id: int
    owner: str
    kind: str
    format: str
    language: str
    title: str
    state: str
    progress: int
    error: str | None
    size: int | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime
    schedule_id: int | None
    period_key: str | None
    spec: dict[str, Any]
    download: str | None

    @classmethod
    def of(cls, row: GeneratedReport) -> ReportOut:
        done = row.state == "done"
        return cls(
            id=row.id, owner=row.owner, kind=row.kind, format=row.format,
            language=row.language, title=row.title, state=row.state, progress=row.progress,
            error=row.error, size=row.size, created_at=row.created_at,
            finished_at=row.finished_at, expires_at=row.expires_at,
            schedule_id=row.schedule_id, period_key=row.period_key, spec=dict(row.spec),
            download=f"/api/v1/reports/{row.id}/download" if done else None,
        )  # fmt: skip


class ReportList(BaseModel):
    items: list[ReportOut]


class Created(BaseModel):
    """What ``POST /reports`` answers (202): one report per format asked for."""

    id: int
    ids: list[int]
    state: str = "queued"


@dataclass(frozen=True)
class ReportFile:
    content: bytes
    filename: str
    media_type: str


def new_rows(
    owner: str,
    spec: dict[str, Any],
    kind: str,
    formats: Iterable[str],
    language: str,
    settings: Settings,
    now: datetime,
    *,
    title: str = "",
    schedule_id: int | None = None,
    period_key: str | None = None,
) -> list[GeneratedReport]:
    """Queued rows, one per format (added to a session by the caller)."""
    expires = now + timedelta(days=settings.report_retention_days)
    return [
        GeneratedReport(
            owner=owner, spec=spec, kind=kind, format=fmt, language=language,
            title=title[:300], state="queued", progress=0, created_at=now,
            expires_at=expires, schedule_id=schedule_id, period_key=period_key,
        )
        for fmt in dict.fromkeys(formats)
    ]  # fmt: skip


def create(database: Database, rows: list[GeneratedReport]) -> Created:
    """Store queued rows (blocking); the workers pick them up."""
    with database.session() as session:
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows]
    return Created(id=ids[0], ids=ids)


def _visible(session: Session, who: Principal, report_id: int) -> GeneratedReport:
    row = session.get(GeneratedReport, report_id)
    if row is None or not who.owns_or_admin(row.owner):
        raise NotFound(f"No report {report_id}.")
    return row


def get(database: Database, who: Principal, report_id: int) -> ReportOut:
    with database.session() as session:
        return ReportOut.of(_visible(session, who, report_id))


def listing(
    database: Database, who: Principal, *, everyone: bool = False, limit: int = 200
) -> ReportList:
    """``who``'s reports, newest first; an admin's ``everyone`` lists all owners'."""
    with database.session() as session:
        query = select(GeneratedReport).order_by(
            GeneratedReport.created_at.desc(), GeneratedReport.id.desc()
        )
        if not (everyone and who.is_admin):
            query = query.where(GeneratedReport.owner == who.username)
        rows = session.scalars(query.limit(limit)).all()
        return ReportList(items=[ReportOut.of(r) for r in rows])


def remove(database: Database, who: Principal, report_id: int) -> None:
    with database.session() as session:
        session.delete(_visible(session, who, report_id))


def filename(row: GeneratedReport, fmt: str) -> str:
    """``job_usage-2026-11-42.pdf``: kind, period key or creation date, id."""
    when = row.period_key or row.created_at.strftime("%Y-%m-%d")
    return f"{row.kind}-{when}-{row.id}.{fmt}"


def download(
    database: Database, who: Principal, report_id: int, fmt: str | None, render: Renderer
) -> ReportFile:
    """The rendered file; another format than the one generated is rendered from the
    stored document (blocking; 404 for a report not done or not visible)."""
    with database.session() as session:
        row = _visible(session, who, report_id)
        if row.state != "done" or row.file is None or row.document is None:
            raise NotFound(f"Report {report_id} is {row.state}, not ready to download.")
        wanted = fmt or row.format
        if wanted not in MEDIA_TYPES:
            raise NotFound(f"No format {wanted[:16]!r}; formats: {', '.join(FORMATS)}.")
        name = filename(row, wanted)
        if wanted == row.format:
            return ReportFile(bytes(row.file), name, MEDIA_TYPES[wanted])
        document = ReportDocument.model_validate(row.document)
    return ReportFile(render(document, wanted), name, MEDIA_TYPES[wanted])


# --- claiming and generating (every replica) -------------------------------------------


def claim(
    database: Database, replica: str, now: datetime, stale: timedelta
) -> tuple[int, str] | None:
    """Take the oldest queued report (or one whose claim went stale): its id and our
    claim token, or None when there is nothing to do (blocking)."""
    waiting = or_(
        GeneratedReport.state == "queued",
        (GeneratedReport.state == "running") & (GeneratedReport.claimed_at < now - stale),
    )
    with database.session() as session:
        ids = session.scalars(
            select(GeneratedReport.id).where(waiting)
            .order_by(GeneratedReport.created_at, GeneratedReport.id).limit(5)
        ).all()  # fmt: skip
        for report_id in ids:
            token = f"{replica[:60]}:{secrets.token_hex(8)}"
            taken = session.execute(
                update(GeneratedReport)
                .where(GeneratedReport.id == report_id, waiting)
                .values(state="running", claimed_by=token, claimed_at=now, progress=1)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return report_id, token
    return None


def _mine(report_id: int, token: str) -> Any:
    return (GeneratedReport.id == report_id) & (GeneratedReport.claimed_by == token)


def set_progress(database: Database, report_id: int, token: str, percent: int) -> None:
    with database.session() as session:
        session.execute(
            update(GeneratedReport)
            .where(_mine(report_id, token), GeneratedReport.state == "running")
            .values(progress=max(1, min(99, int(percent))))
            .execution_options(synchronize_session=False)
        )  # fmt: skip


def _announce(session: Session, row: GeneratedReport, now: datetime) -> list[Delivery]:
    """The owner's bell: once per report (insert if absent)."""
    done = row.state == "done"
    label = row.title or row.kind
    params = {"report_id": row.id, "title": label, "format": row.format.upper(),
              "error": row.error or "", "link": f"/reports#report-{row.id}"}  # fmt: skip
    if done:
        title, body = "Report ready", f"Your report {label} ({row.format.upper()}) is ready."
    else:
        title = "Report failed"
        body = f"Your report {label} ({row.format.upper()}) could not be generated: {row.error}"
    note = new_row(row.owner, "report", EVENT_DONE if done else EVENT_FAILED, title,
                   body[:2000], params, now, target=f"report:{row.id}", episode=0)  # fmt: skip
    inserted = insert_new(session, [note], ["username", "target", "episode", "event"])
    return deliveries_for(session, inserted)


def finish(
    database: Database, report_id: int, token: str, document: ReportDocument, content: bytes,
    now: datetime,
) -> list[Delivery]:  # fmt: skip
    """Store the result if the claim is still ours, and tell the owner (blocking)."""
    with database.session() as session:
        row = session.scalars(select(GeneratedReport).where(_mine(report_id, token))).first()
        if row is None or row.state != "running":
            return []
        row.state, row.progress, row.finished_at = "done", 100, now
        row.document = document.model_dump(mode="json")
        row.file, row.size = content, len(content)
        row.title = document.title[:300]
        session.flush()
        return _announce(session, row, now)


def fail(
    database: Database, report_id: int, token: str, error: str, now: datetime
) -> list[Delivery]:
    with database.session() as session:
        row = session.scalars(select(GeneratedReport).where(_mine(report_id, token))).first()
        if row is None or row.state != "running":
            return []
        row.state, row.finished_at, row.error = "failed", now, error[:2000]
        session.flush()
        return _announce(session, row, now)


def generate(
    database: Database, settings: Settings, build: Builder, render: Renderer,
    report_id: int, token: str, clock: Callable[[], datetime],
) -> list[Delivery]:  # fmt: skip
    """Build, render and store one claimed report (blocking: a worker thread)."""
    with database.session() as session:
        row = session.get(GeneratedReport, report_id)
        if row is None:
            return []
        spec, owner, fmt = dict(row.spec), row.owner, row.format

    def progress(percent: int) -> None:
        set_progress(database, report_id, token, 5 + percent * 75 // 100)

    try:
        document = build(spec, owner, progress)
        set_progress(database, report_id, token, 85)
        content = render(document, fmt)
        if len(content) > settings.report_max_bytes:
            raise ValueError(
                f"The {fmt.upper()} file is {len(content)} bytes, more than report_max_bytes "
                f"({settings.report_max_bytes}); choose a shorter period or fewer dimensions."
            )
    except Exception as exc:
        log.warning("report %d failed", report_id, exc_info=True)
        return fail(database, report_id, token, f"{type(exc).__name__}: {exc}", clock())
    return finish(database, report_id, token, document, content, clock())


def expire(database: Database, fence: Callable[[Session], None], now: datetime) -> int:
    """Delete reports past ``expires_at`` (the leader, fenced; blocking)."""
    with database.session() as session:
        fence(session)
        result = session.execute(
            delete(GeneratedReport).where(GeneratedReport.expires_at <= now)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        return int(result.rowcount)  # type: ignore[attr-defined]


class ReportWorker(PeriodicPart):
    """The background part on every replica: generate queued reports one at a time."""

    loop_name = "report-worker"
    failed = "report generation failed"
    logger = log

    def __init__(
        self,
        settings: Settings,
        database: Database,
        build: Builder,
        render: Renderer,
        replica: str,
        *,
        deliver: Callable[[Iterable[Delivery]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.database = settings, database
        self.build, self.render, self.replica = build, render, replica
        self.deliver, self.clock = deliver, clock

    def interval(self) -> float:
        return self.settings.report_worker_seconds

    async def tick(self) -> int:
        """Generate queued reports until none is left; how many this round did."""
        done = 0
        stale = timedelta(minutes=self.settings.report_stale_minutes)
        while (claimed := await run_in_threadpool(
                claim, self.database, self.replica, self.clock(), stale)) is not None:  # fmt: skip
            report_id, token = claimed
            deliveries = await run_in_threadpool(
                generate, self.database, self.settings, self.build, self.render,
                report_id, token, self.clock,
            )  # fmt: skip
            if self.deliver is not None and deliveries:
                self.deliver(deliveries)
            done += 1
        return done
