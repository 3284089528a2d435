"""What the efficiency, system and user-activity kinds share: whose rows a viewer may
see, which rollup answers a period, the usage store as a source, and their texts.

Kept apart from the kinds so each kind reads in one sitting. Every rule here is the
one ``spec.py`` states: an admin sees everything, a Slurm account coordinator the
accounts they coordinate and their own jobs, anyone else their own jobs; a spec's
scope and filters only ever narrow that (``service.check_scope`` refused wider asks
before queueing, and the rule is applied again here because rights can change
between asking and building).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.report_tables import UsageDaily, UsageHourly, UsageIngestCursor, UsageJob
from hpcportal.errors import Forbidden, SlurmError
from hpcportal.services.reports import usage
from hpcportal.services.reports.document import Language, Period, Source
from hpcportal.services.reports.spec import ReportSpec, Viewer

if TYPE_CHECKING:
    from hpcportal.services.reports.kinds import BuildContext

#: The name printed for the usage store as a source, per language.
STORE = {"en": "usage store (sacct, ingested)", "ko": "사용량 저장소 (sacct 수집)"}


#: Kinds only admins (and Slurm operators) may ask for: the API can refuse them (403)
#: before queueing, as the kind refuses them when it builds.
ADMIN_ONLY_KINDS: frozenset[str] = frozenset({"system"})


def admins_only(viewer: Viewer, what: str) -> None:
    """403 (``Forbidden``) for anyone but an admin or Slurm operator."""
    if not viewer.is_admin:
        raise Forbidden(
            f"The {what} report is for admins only: it shows the whole cluster, "
            f"which {viewer.username} may not see."
        )


def row_scope(table: Any, viewer: Viewer, spec: ReportSpec) -> ColumnElement[bool]:
    """The condition on a table with ``user`` and ``account`` columns (a rollup or
    ``usage_jobs``) for the rows ``viewer`` may see (``usage.resolve_scope``: 403 when
    the spec names more), narrowed by the spec's scope and filters."""
    scope = usage.resolve_scope(viewer, spec.scope, spec.filters)
    clauses: list[ColumnElement[bool]] = []
    if not scope.everyone:
        own: ColumnElement[bool] = table.user == scope.own
        if scope.accounts:
            own = or_(own, table.account.in_(sorted(scope.accounts)))
        clauses.append(own)
    if scope.only_users:
        clauses.append(table.user.in_(sorted(scope.only_users)))
    if scope.only_accounts:
        clauses.append(table.account.in_(sorted(scope.only_accounts)))
    for dimension, values in spec.filters.items():
        if values:
            clauses.append(getattr(table, dimension).in_(sorted(set(values))))
    return and_(true(), *clauses)


def users_of(session: Session, adapter: Any, accounts: Iterable[str]) -> set[str]:
    """The users of ``accounts``: Slurm's associations (``sacctmgr``, when an adapter is
    given and answers) and anyone with jobs of them in the usage store."""
    wanted = sorted(set(accounts))
    if not wanted:
        return set()
    found = set(session.scalars(
        select(UsageJob.user).where(UsageJob.account.in_(wanted)).distinct()
    ).all())  # fmt: skip
    if adapter is not None:
        with suppress(SlurmError):  # the store's users still hold; Slurm may be away
            found |= {a.user for a in adapter.associations() if a.user and a.account in wanted}
    return found


def visible_users(
    session: Session, viewer: Viewer, spec: ReportSpec, adapter: Any
) -> set[str] | None:
    """The users whose audit entries and sessions ``viewer`` may see of what ``spec``
    asks (None: everyone). Same rule as the job figures (``usage.resolve_scope``): an
    admin everyone, a coordinator the users of their accounts and themselves, anyone
    else themselves; the spec's users and accounts narrow it."""
    scope = usage.resolve_scope(viewer, spec.scope, spec.filters)
    allowed: set[str] | None = None
    if not scope.everyone:
        allowed = {scope.own or viewer.username} | users_of(session, adapter, scope.accounts)
    for names in (set(scope.only_users), set(spec.filters.get("user", []))):
        if names:
            allowed = names if allowed is None else allowed & names
    accounts = set(scope.only_accounts) | set(spec.filters.get("account", []))
    if accounts:
        members = users_of(session, adapter, accounts)
        allowed = members if allowed is None else allowed & members
    return allowed


def scope_text(viewer: Viewer, spec: ReportSpec, language: Language) -> str:
    """The document's ``scope``: whose figures it holds, in its language."""
    ko = language == "ko"
    parts: list[str] = []
    if spec.scope.accounts:
        parts.append(("계정 " if ko else "account ") + ", ".join(spec.scope.accounts))
    if spec.scope.users:
        parts.append(("사용자 " if ko else "user ") + ", ".join(spec.scope.users))
    if parts:
        return "; ".join(parts)
    if viewer.is_admin:
        return "전체" if ko else "all"
    if viewer.coordinates:
        accounts = ", ".join(sorted(viewer.coordinates))
        if ko:
            return f"계정 {accounts}; 사용자 {viewer.username}"
        return f"account {accounts}; user {viewer.username}"
    return ("사용자 " if ko else "user ") + viewer.username


def on_midnights(period: Period) -> bool:
    """Whether a period starts and ends on UTC midnights (the daily rollup answers it)."""
    return all(t.hour == t.minute == t.second == t.microsecond == 0
               for t in (period.start, period.end))  # fmt: skip


def rollup_for(period: Period) -> type[UsageDaily] | type[UsageHourly]:
    """The daily rollup for whole UTC days (a year is 365 rows per key), else hourly."""
    return UsageDaily if on_midnights(period) else UsageHourly


def hours_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def store_source(session: Session, period: Period, language: Language) -> Source:
    """The usage store as the source of a period's figures: the Slurm release the
    store last read, and how far it is complete (a period past that is partial)."""
    cursors = session.scalars(select(UsageIngestCursor)).all()
    releases = sorted({c.slurm_release for c in cursors if c.slurm_release})
    until = min((c.ingested_until for c in cursors), default=None)
    if until is None:
        detail = "nothing ingested yet" if language == "en" else "아직 수집된 작업 없음"
    elif until < period.end:
        stamp = until.strftime("%Y-%m-%d %H:%M UTC")
        detail = (f"complete until {stamp}" if language == "en"
                  else f"{stamp}까지 수집됨")  # fmt: skip
    else:
        detail = "complete for the period" if language == "en" else "기간 전체 수집됨"
    return Source(
        name=STORE[language],
        window=period,
        slurm_release=", ".join(releases) or None,
        detail=detail,
    )


def previous_of(spec: ReportSpec) -> Period | None:
    """The period to compare with, or None when the spec asks for no comparison."""
    return spec.previous_period() if spec.compare_previous else None


def ratio(part: float, whole: float) -> float | None:
    """``part / whole`` as a fraction, or None (an empty cell) when ``whole`` is 0."""
    return part / whole if whole else None


def settings_of(context: BuildContext) -> Settings:
    """The context's settings, or the defaults (a test or tool building without)."""
    return context.settings if context.settings is not None else Settings()
