"""Job templates: who may see and change which, their history, use and seeding.

A ``site`` template is read by everyone and changed by admins; a ``personal`` one
exists only for its owner: anyone else gets 404, as if it did not exist, so ids do
not reveal other people's templates. Every change is audited, and every update
keeps the version it replaces. Rendering itself is ``template_render``'s job.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ColumnElement, and_, func, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from hpcportal.db.models import JobTemplate, JobTemplateVersion
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.limits import Text
from hpcportal.services import audit
from hpcportal.services.identity import Principal
from hpcportal.services.submit import SubmitContext, submit_job
from hpcportal.services.submit_models import (
    MAX_SCRIPT_BYTES,
    JobRequest,
    SubmitPreview,
    SubmitResult,
)
from hpcportal.services.template_params import TemplateParameter
from hpcportal.services.template_render import check_template, render_job
from hpcportal.services.template_seeds import SITE_TEMPLATES, SeedTemplate

log = logging.getLogger(__name__)

Scope = Literal["site", "personal"]
MAX_PARAMETERS = 50


class TemplateIn(BaseModel):
    """What a client sends to create or replace a template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=4000)
    category: str = Field(min_length=1, max_length=64, description="python, gpu, mpi...")
    scope: Scope | None = Field(
        default=None, description="personal (the default) or site; an update cannot change it"
    )
    script: str = Field(min_length=1, max_length=MAX_SCRIPT_BYTES, description="Jinja2")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Default JobRequest fields (all but script)"
    )
    parameters: list[TemplateParameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)

    @field_validator("name", "category")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("give printable text on one line")
        return value


class TemplateOut(BaseModel):
    id: int
    slug: str | None
    name: str
    description: str
    category: str
    scope: Scope
    owner: str | None
    script: str
    options: dict[str, Any]
    parameters: list[TemplateParameter]
    version: int
    use_count: int
    created_at: datetime
    updated_at: datetime
    updated_by: str | None


class TemplateList(BaseModel):
    items: list[TemplateOut]


class TemplateVersionOut(BaseModel):
    """One version of a template; ``current`` marks the one in use now."""

    version: int
    current: bool = False
    script: str
    options: dict[str, Any]
    parameters: list[TemplateParameter]
    edited_by: str | None
    edited_at: datetime


class RenderIn(BaseModel):
    """Parameter values, plus optional ``JobRequest`` fields that override the rest."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


# --- Reading --------------------------------------------------------------------------


def _visible_to(who: Principal) -> ColumnElement[bool]:
    return or_(
        JobTemplate.scope == "site",
        and_(JobTemplate.scope == "personal", JobTemplate.owner == who.username),
    )


def _out(row: JobTemplate) -> TemplateOut:
    return TemplateOut.model_validate(row, from_attributes=True)


def _load(session: Session, template_id: int, who: Principal, *, lock: bool = False) -> JobTemplate:
    query = select(JobTemplate).where(JobTemplate.id == template_id, _visible_to(who))
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound(f"No template {template_id}.")
    return row


def list_templates(
    session: Session, who: Principal, *, category: str | None = None, scope: Scope | None = None
) -> TemplateList:
    """Site templates and the caller's own, site first, then by name."""
    query = select(JobTemplate).where(_visible_to(who))
    if category:
        query = query.where(func.lower(JobTemplate.category) == category.strip().lower())
    if scope:
        query = query.where(JobTemplate.scope == scope)
    query = query.order_by(JobTemplate.scope.desc(), JobTemplate.name, JobTemplate.id)
    return TemplateList(items=[_out(row) for row in session.scalars(query)])


def get_template(session: Session, template_id: int, who: Principal) -> TemplateOut:
    return _out(_load(session, template_id, who))


def categories(session: Session, who: Principal) -> list[str]:
    """The categories of the templates the caller can see, for a filter menu."""
    query = select(JobTemplate.category).where(_visible_to(who)).distinct()
    return sorted(set(session.scalars(query)), key=str.lower)


def history(session: Session, template_id: int, who: Principal) -> list[TemplateVersionOut]:
    """Every version, newest (the current one) first."""
    row = _load(session, template_id, who)
    current = TemplateVersionOut.model_validate(
        {
            "version": row.version,
            "current": True,
            "script": row.script,
            "options": row.options,
            "parameters": row.parameters,
            "edited_by": row.updated_by,
            "edited_at": row.updated_at,
        }
    )
    older = session.scalars(
        select(JobTemplateVersion)
        .where(JobTemplateVersion.template_id == row.id)
        .order_by(JobTemplateVersion.version.desc())
    )
    return [current] + [TemplateVersionOut.model_validate(v, from_attributes=True) for v in older]


# --- Changing -------------------------------------------------------------------------


def _may_change(row: JobTemplate, who: Principal) -> None:
    """Personal templates are reachable only by their owner (``_load``); site ones are
    readable by all but changed by admins only."""
    if row.scope == "site" and not who.is_admin:
        raise Forbidden("Only administrators can change site templates.")


def _checked(body: TemplateIn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Normalised options and parameters, after the template proved it can work."""
    options = check_template(body.script, body.parameters, body.options)
    return options, [p.model_dump(mode="json") for p in body.parameters]


def create_template(
    session: Session,
    body: TemplateIn,
    who: Principal,
    *,
    slug: str | None = None,
    now: datetime | None = None,
    address: str | None = None,
) -> TemplateOut:
    """A new template, owned by the caller unless it is a site one (admins only)."""
    now = now or datetime.now(UTC)
    scope = body.scope or "personal"
    if scope == "site" and not who.is_admin:
        raise Forbidden("Only administrators can create site templates.")
    options, parameters = _checked(body)
    row = JobTemplate(
        slug=slug,
        name=body.name,
        description=body.description,
        category=body.category,
        scope=scope,
        owner=None if scope == "site" else who.username,
        script=body.script,
        options=options,
        parameters=parameters,
        version=1,
        use_count=0,
        created_at=now,
        updated_at=now,
        updated_by=who.username,
    )
    session.add(row)
    session.flush()
    _audit(session, who, "template.create", row, f"{row.scope} {row.name!r}", address)
    return _out(row)


def update_template(
    session: Session,
    template_id: int,
    body: TemplateIn,
    who: Principal,
    *,
    now: datetime | None = None,
    address: str | None = None,
) -> TemplateOut:
    """Replace a template's content; the version it replaces goes to the history."""
    now = now or datetime.now(UTC)
    row = _load(session, template_id, who, lock=True)
    _may_change(row, who)
    if body.scope not in (None, row.scope):
        raise InvalidInput("A template's scope cannot change; create a new template instead.")
    options, parameters = _checked(body)
    session.add(
        JobTemplateVersion(
            template_id=row.id,
            version=row.version,
            script=row.script,
            options=row.options,
            parameters=row.parameters,
            edited_by=row.updated_by,
            edited_at=row.updated_at,
        )
    )
    row.name, row.description, row.category = body.name, body.description, body.category
    row.script, row.options, row.parameters = body.script, options, parameters
    row.version += 1
    row.updated_at, row.updated_by = now, who.username
    session.flush()
    _audit(session, who, "template.update", row, f"version {row.version}", address)
    return _out(row)


def delete_template(
    session: Session, template_id: int, who: Principal, *, address: str | None = None
) -> None:
    """Delete a template and its history (the foreign key cascades)."""
    row = _load(session, template_id, who, lock=True)
    _may_change(row, who)
    _audit(session, who, "template.delete", row, f"{row.scope} {row.name!r}", address)
    session.delete(row)
    session.flush()


def _audit(
    session: Session,
    who: Principal,
    action: str,
    row: JobTemplate,
    detail: str,
    address: str | None,
) -> None:
    audit.add(session, audit.Event.of(who, action, f"template:{row.id}", address, None, detail))


# --- Using ----------------------------------------------------------------------------


def render(session: Session, template_id: int, who: Principal, body: RenderIn) -> JobRequest:
    """The ``JobRequest`` the template gives for these values; nothing is submitted."""
    row = _load(session, template_id, who)
    parameters = [TemplateParameter.model_validate(p) for p in row.parameters]
    return render_job(row.script, parameters, row.options, body.parameters, body.options)


def count_use(session: Session, template_id: int) -> None:
    """One more real submission; a single UPDATE, so concurrent ones all count."""
    session.execute(
        update(JobTemplate)
        .where(JobTemplate.id == template_id)
        .values(use_count=JobTemplate.use_count + 1)
    )


def submit(
    session: Session,
    ctx: SubmitContext,
    template_id: int,
    who: Principal,
    body: RenderIn,
    *,
    idempotency_key: str | None = None,
    dry_run: bool = False,
    address: str | None = None,
) -> SubmitResult | SubmitPreview:
    """Render and submit (or preview) as ``who``; a real, new submission counts a use.

    Submits through ``submit_job`` like ``POST /jobs`` (same Idempotency-Key rules)
    and is audited like it (``job.submit``, whatever the outcome, in a transaction of
    its own that never changes the answer). Blocking: call it in a worker thread.
    """
    request = render(session, template_id, who, body)
    # End the read before sbatch runs: it may take seconds, and SQLite cannot turn a
    # read begun before other writers committed into a write.
    session.commit()
    try:
        result = submit_job(
            ctx,
            request,
            who,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
            template_id=template_id,
        )
    except Exception as exc:
        if not dry_run:
            _audit_submit(ctx.database, who, template_id, None, address, exc)
        raise
    if isinstance(result, SubmitResult) and not result.replayed:
        _audit_submit(ctx.database, who, template_id, result.job_id, address, None)
        _count_use_quietly(ctx.database, template_id)
    return result


def _audit_submit(
    database: Database,
    who: Principal,
    template_id: int,
    job_id: int | None,
    address: str | None,
    error: Exception | None,
) -> None:
    target = f"job:{job_id}" if job_id is not None else None
    detail = f"from template:{template_id}"
    audit.write(database, audit.Event.of(who, "job.submit", target, address, error, detail))


def _count_use_quietly(database: Database, template_id: int) -> None:
    """Count in a transaction of its own: the job exists whatever happens here, so a
    failure to count is retried, then logged, never turned into an error for the
    submission."""
    database.write_or_log(
        lambda session: count_use(session, template_id),
        what="template use",
        about=f"template {template_id}",
    )


# --- Seeding --------------------------------------------------------------------------


def seed_site_templates(
    database: Database, seeds: tuple[SeedTemplate, ...] = SITE_TEMPLATES
) -> list[str]:
    """Create each seed whose slug no template has; returns the slugs created.

    Each seed is its own transaction: replicas starting together may race, and the
    unique slug makes the loser's insert fail harmlessly. A database that is down or
    not migrated is logged and left alone: the portal still serves, and ``/ready``
    reports the database.
    """
    try:
        if not inspect(database.engine).has_table(JobTemplate.__tablename__):
            log.warning("job_templates table missing (run `hpcportal db upgrade`): not seeding")
            return []
        return [seed.slug for seed in seeds if _seed_one(database, seed)]
    except SQLAlchemyError:
        log.exception("could not seed the site templates; they are added at the next start")
        return []


#: Who the audit log and ``updated_by`` name for seeded templates: the portal itself.
_SEEDER = Principal(username="hpcportal", uid=0, gid=0, groups=(), role="admin")


def _seed_one(database: Database, seed: SeedTemplate) -> bool:
    body = TemplateIn(
        name=seed.name,
        description=seed.description,
        category=seed.category,
        scope="site",
        script=seed.script,
        options=seed.options,
        parameters=list(seed.parameters),
    )
    try:
        with database.session() as session:
            exists = select(JobTemplate.id).where(JobTemplate.slug == seed.slug)
            if session.scalar(exists) is not None:
                return False
            create_template(session, body, _SEEDER, slug=seed.slug)
    except IntegrityError:
        log.info("site template %s was seeded by another replica", seed.slug)
        return False
    return True
