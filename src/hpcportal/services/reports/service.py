"""What the API, the pages and the CLI ask of reports, checked once here.

A request hands a ``ReportSpec`` (validated by ``spec.py``) and the formats it wants;
``ask`` checks the scope for the person asking and queues one report per format (the
workers build them: ``generation``). The scope rule, before anything is queued: a
portal admin or Slurm operator may name anyone, a coordinator their accounts (and
users, whom the kinds then limit to those accounts), anyone else only themselves;
naming more is refused (403) rather than silently dropped, and the kinds apply the
same rule again when they build (``Viewer``), so a right lost since asking is lost
for the report too. ``preview`` builds the document of a short period in the request
itself, for the form's chart.

The builder is the kinds' ``build_report``; the renderers (ReportLab, XlsxWriter) are
imported at the first report rendered, so a portal starts without loading them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.services.identity import Principal, lookup_principal
from hpcportal.services.reports import generation, schedules
from hpcportal.services.reports.document import Period, ReportDocument, ReportFormat
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.kinds.support import ADMIN_ONLY_KINDS
from hpcportal.services.reports.periods import SchedulePeriod
from hpcportal.services.reports.spec import ReportSpec, Viewer
from hpcportal.slurm.adapter import SlurmAdapter

#: The longest period the form's preview builds in a request.
PREVIEW_MAX = timedelta(days=92)


class ReportAsk(BaseModel):
    """``POST /reports``: the spec and the formats to render it in (one report each)."""

    spec: ReportSpec
    formats: list[ReportFormat] = Field(default=["pdf"], min_length=1, max_length=4)


def viewer_of(adapter: SlurmAdapter, who: Principal) -> Viewer:
    """``who`` with their Slurm roles (blocking: ``sacctmgr``, cached by the adapter)."""
    return Viewer.of(who, adapter.roles())


def check_scope(spec: ReportSpec, viewer: Viewer) -> None:
    """403 for a spec naming users or accounts ``viewer`` may not ask about."""
    if viewer.is_admin:
        return
    if spec.kind in ADMIN_ONLY_KINDS:
        raise Forbidden(f"The {spec.kind} report is for admins only: it shows the whole cluster.")
    named_accounts = set(spec.scope.accounts) | set(spec.filters.get("account", []))
    other_accounts = sorted(named_accounts - viewer.coordinates)
    if other_accounts:
        raise Forbidden(
            f"{viewer.username} may not ask for reports of account(s) "
            f"{', '.join(other_accounts)}: only admins and the accounts' coordinators may."
        )
    named_users = set(spec.scope.users) | set(spec.filters.get("user", []))
    if not viewer.coordinates and named_users - {viewer.username}:
        raise Forbidden(f"{viewer.username} may ask for reports of their own jobs only.")


def parse_spec(data: dict[str, Any]) -> ReportSpec:
    """A stored or sent spec as ``ReportSpec``; 422 with pydantic's reasons."""
    try:
        return ReportSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors())) from None  # fmt: skip


def ask(
    settings: Settings, database: Database, adapter: SlurmAdapter, who: Principal,
    body: ReportAsk, now: datetime | None = None,
) -> generation.Created:  # fmt: skip
    """Queue the reports ``body`` asks for (blocking)."""
    check_scope(body.spec, viewer_of(adapter, who))
    spec = body.spec.model_dump(mode="json")
    rows = generation.new_rows(who.username, spec, body.spec.kind, body.formats,
                               body.spec.language, settings, now or datetime.now(UTC))  # fmt: skip
    return generation.create(database, rows)


def add_schedule(
    database: Database, adapter: SlurmAdapter, who: Principal, body: schedules.ScheduleIn,
    now: datetime | None = None,
) -> schedules.ScheduleOut:  # fmt: skip
    """Store a schedule whose spec ``who`` may ask for (blocking)."""
    # The runs' days, weeks and months are the schedule's: its zone is the spec's too.
    spec = parse_spec({**body.spec, "time_zone": body.time_zone})
    check_scope(spec, viewer_of(adapter, who))
    stored = body.model_copy(update={"language": spec.language})
    return schedules.create(database, who, stored, spec.model_dump(mode="json"),
                            now or datetime.now(UTC))  # fmt: skip


def with_period(
    spec: dict[str, Any], period: SchedulePeriod, previous: SchedulePeriod
) -> dict[str, Any]:
    """A schedule's spec for one run: its period, compared with the calendar period
    before (a month with the month before, not with the 30 days before)."""

    def window(p: SchedulePeriod) -> dict[str, str]:
        return {"start": p.start.isoformat(), "end": p.end.isoformat()}

    return {**spec, "period": window(period), "previous": window(previous)}


def renderer(settings: Settings) -> generation.Renderer:
    """The renderers' ``render`` with the site's PDF font (``reports_font_path``),
    imported at the first report rendered."""

    def render(document: ReportDocument, fmt: str) -> bytes:
        from hpcportal.services.reports.render import renderer as site_renderer

        return site_renderer(settings)(document, fmt)

    return render


def build(
    settings: Settings, database: Database, adapter: SlurmAdapter, spec: ReportSpec,
    viewer: Viewer, progress: Callable[[int], None] | None = None,
) -> ReportDocument:  # fmt: skip
    """The kinds' ``build_report`` for ``viewer`` (blocking)."""
    with database.session() as session:
        return build_report(
            spec, viewer, session, settings=settings, adapter=adapter, progress=progress
        )


def builder(settings: Settings, database: Database, adapter: SlurmAdapter) -> generation.Builder:
    """What the workers build with: the owner's rights as they are now."""

    def build_for(
        spec: dict[str, Any], owner: str, progress: Callable[[int], None]
    ) -> ReportDocument:
        principal = lookup_principal(owner, settings.admin_group)
        if principal is None:
            raise NotFound(f"User {owner} no longer exists.")
        viewer = viewer_of(adapter, principal)
        return build(settings, database, adapter, parse_spec(spec), viewer, progress)

    return build_for


def preview(
    settings: Settings, database: Database, adapter: SlurmAdapter, who: Principal,
    spec: ReportSpec,
) -> ReportDocument:  # fmt: skip
    """The document of a short period, built in the request (the form's chart)."""
    if spec.period.end - spec.period.start > PREVIEW_MAX:
        spec = spec.model_copy(update={"period": Period(start=spec.period.end - PREVIEW_MAX,
                                                        end=spec.period.end)})  # fmt: skip
    viewer = viewer_of(adapter, who)
    check_scope(spec, viewer)
    return build(settings, database, adapter, spec, viewer)
