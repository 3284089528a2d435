"""``/reports``: usage reports generated in the background, their files and schedules.

``POST /reports`` answers 202 with the new report's id at once; a worker builds it
(``services.reports.generation``). A report or schedule of someone else is 404 to you
(admins see all), like every hidden thing in this API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from hpcportal.api.params import DbId
from hpcportal.dependencies import AdapterDep, CurrentUser, DatabaseDep, SettingsDep, strict_query
from hpcportal.services.files.headers import content_disposition
from hpcportal.services.reports import generation, schedules, service
from hpcportal.services.reports.document import ReportDocument
from hpcportal.services.reports.generation import Created, ReportList, ReportOut
from hpcportal.services.reports.ingest import StoreStatusList, store_status
from hpcportal.services.reports.schedules import ScheduleIn, ScheduleList, ScheduleOut
from hpcportal.services.reports.service import ReportAsk
from hpcportal.services.reports.spec import ReportSpec

router = APIRouter(prefix="/reports", tags=["reports"])

ReportId = Annotated[DbId, Path()]
ScheduleId = Annotated[DbId, Path()]
Everyone = Annotated[bool, Query(description="Admins: every owner's, not only yours.")]


# --- schedules first: "/schedules" is not a report id -------------------------------------


@router.post("/schedules", status_code=status.HTTP_201_CREATED, response_model=ScheduleOut,
             dependencies=[strict_query()])  # fmt: skip
def create_schedule(
    body: ScheduleIn, who: CurrentUser, database: DatabaseDep, adapter: AdapterDep
) -> ScheduleOut:
    """Generate ``spec`` every day, week (Mondays) or month (the 1st) at ``time_of_day``
    in ``time_zone``, for the period just ended, in each of ``formats``."""
    return service.add_schedule(database, adapter, who, body)


@router.get("/schedules", response_model=ScheduleList, dependencies=[strict_query("all")])
def list_schedules(who: CurrentUser, database: DatabaseDep, all: Everyone = False) -> ScheduleList:
    return schedules.listing(database, who, everyone=all)


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[strict_query()])
def get_schedule(schedule_id: ScheduleId, who: CurrentUser, database: DatabaseDep) -> ScheduleOut:
    return schedules.get(database, who, schedule_id)


@router.delete("/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[strict_query()])  # fmt: skip
def delete_schedule(schedule_id: ScheduleId, who: CurrentUser, database: DatabaseDep) -> None:
    """Stop a schedule; the reports it made stay until they expire."""
    schedules.remove(database, who, schedule_id)


# --- reports ----------------------------------------------------------------------------


@router.get("/store", response_model=StoreStatusList, dependencies=[strict_query()])
def usage_store(who: CurrentUser, database: DatabaseDep, settings: SettingsDep) -> StoreStatusList:
    """Up to when the usage store behind every report holds all ended jobs: figures of
    later hours are not in reports yet (the leader reads sacct every
    ``ingest_every_seconds``, up to ``settle_seconds`` ago)."""
    return store_status(database, settings, datetime.now(UTC))


@router.post("/preview", response_model=ReportDocument, dependencies=[strict_query()])
def preview(
    spec: ReportSpec, who: CurrentUser, database: DatabaseDep, adapter: AdapterDep,
    settings: SettingsDep,
) -> ReportDocument:  # fmt: skip
    """The report document of ``spec`` built now, for at most the last 92 days of its
    period (the form's preview chart); nothing is stored."""
    return service.preview(settings, database, adapter, who, spec)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Created,
             dependencies=[strict_query()])  # fmt: skip
def create_report(
    body: ReportAsk, who: CurrentUser, database: DatabaseDep, adapter: AdapterDep,
    settings: SettingsDep,
) -> Created:  # fmt: skip
    """Queue a report (one per format); poll ``GET /reports/{id}`` until ``done``."""
    return service.ask(settings, database, adapter, who, body)


@router.get("", response_model=ReportList, dependencies=[strict_query("all")])
def list_reports(who: CurrentUser, database: DatabaseDep, all: Everyone = False) -> ReportList:
    """Your reports, newest first (an admin's ``all=true``: everyone's)."""
    return generation.listing(database, who, everyone=all)


@router.get("/{report_id}", response_model=ReportOut, dependencies=[strict_query()])
def get_report(report_id: ReportId, who: CurrentUser, database: DatabaseDep) -> ReportOut:
    """State (queued, running, done, failed) and progress (0-100)."""
    return generation.get(database, who, report_id)


@router.get("/{report_id}/download", dependencies=[strict_query("format")],
            responses={200: {"content": {t: {} for t in generation.MEDIA_TYPES.values()},
                             "description": "The report's file."}})  # fmt: skip
def download_report(
    report_id: ReportId, who: CurrentUser, database: DatabaseDep, settings: SettingsDep,
    format: Literal["pdf", "xlsx", "csv", "json"] | None = None,
) -> Response:  # fmt: skip
    """The file; ``format`` renders a finished report in another format from the
    document it was built from."""
    found = generation.download(database, who, report_id, format, service.renderer(settings))
    headers = {
        "Content-Disposition": content_disposition(found.filename, inline=False),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    return Response(found.content, media_type=found.media_type, headers=headers)


@router.delete("/{report_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[strict_query()])  # fmt: skip
def delete_report(report_id: ReportId, who: CurrentUser, database: DatabaseDep) -> None:
    generation.remove(database, who, report_id)
