"""``/templates``: job templates, their history, rendering and submission.

Site templates are read by everyone and changed by admins; personal ones exist only
for their owner (404 for anyone else). The rules live in ``services.templates``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.params import DbId
from hpcportal.dependencies import (
    ClientAddress,
    CurrentUser,
    DbDep,
    SnapshotDep,
    SubmitContextDep,
    strict_query,
)
from hpcportal.services import templates as service
from hpcportal.services.submit_models import JobRequest, SubmitPreview, SubmitResult
from hpcportal.services.templates import (
    RenderIn,
    Scope,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplateVersionOut,
)

router = APIRouter(prefix="/templates", tags=["templates"])

#: Ids are 32-bit in the database; a larger number is a 422 here, not a database error.
TemplateId = Annotated[DbId, Path()]


@router.get("", response_model=TemplateList, dependencies=[strict_query("category", "scope")])
def list_templates(
    who: CurrentUser, db: DbDep, category: str | None = None, scope: Scope | None = None
) -> TemplateList:
    """Site templates and your own, optionally of one category or scope."""
    return service.list_templates(db, who, category=category, scope=scope)


@router.get("/categories", response_model=list[str], dependencies=[strict_query()])
def list_categories(who: CurrentUser, db: DbDep) -> list[str]:
    """The categories of the templates you can see."""
    return service.categories(db, who)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateOut,
    dependencies=[strict_query()],
)
def create_template(
    body: TemplateIn, who: CurrentUser, db: DbDep, address: ClientAddress
) -> TemplateOut:
    """Create a personal template (or, as an admin, a site one)."""
    return service.create_template(db, body, who, address=address)


@router.get("/{template_id}", response_model=TemplateOut, dependencies=[strict_query()])
def get_template(template_id: TemplateId, who: CurrentUser, db: DbDep) -> TemplateOut:
    return service.get_template(db, template_id, who)


@router.put("/{template_id}", response_model=TemplateOut, dependencies=[strict_query()])
def update_template(
    template_id: TemplateId, body: TemplateIn, who: CurrentUser, db: DbDep, address: ClientAddress
) -> TemplateOut:
    """Replace a template; the previous version stays in its history."""
    return service.update_template(db, template_id, body, who, address=address)


@router.delete(
    "/{template_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[strict_query()]
)
def delete_template(
    template_id: TemplateId, who: CurrentUser, db: DbDep, address: ClientAddress
) -> None:
    service.delete_template(db, template_id, who, address=address)


@router.get(
    "/{template_id}/history",
    response_model=list[TemplateVersionOut],
    dependencies=[strict_query()],
)
def template_history(
    template_id: TemplateId, who: CurrentUser, db: DbDep
) -> list[TemplateVersionOut]:
    """Every version of the template, the current one first."""
    return service.history(db, template_id, who)


@router.post("/{template_id}/render", response_model=JobRequest, dependencies=[strict_query()])
def render_template(
    template_id: TemplateId, body: RenderIn, who: CurrentUser, db: DbDep
) -> JobRequest:
    """The job request these parameter values give; nothing is submitted."""
    return service.render(db, template_id, who, body)


@router.post(
    "/{template_id}/submit",
    response_model=SubmitResult | SubmitPreview,
    status_code=status.HTTP_201_CREATED,
    dependencies=[strict_query("dry_run")],
    responses={200: {"description": "A dry run's preview, or a replayed submission"}},
)
async def submit_template(
    template_id: TemplateId,
    body: RenderIn,
    who: CurrentUser,
    db: DbDep,
    ctx: SubmitContextDep,
    address: ClientAddress,
    response: Response,
    snapshot: SnapshotDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    dry_run: bool = False,
) -> SubmitResult | SubmitPreview:
    """Render and submit as you, like ``POST /jobs``: ``dry_run=true`` previews with
    ``sbatch --test-only``; a repeated ``Idempotency-Key`` returns the first job."""
    result = await run_in_threadpool(
        service.submit,
        db,
        ctx,
        template_id,
        who,
        body,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
        address=address,
    )
    if isinstance(result, SubmitResult):
        snapshot.request_refresh(result.job_id)
    if isinstance(result, SubmitPreview) or result.replayed:
        response.status_code = status.HTTP_200_OK
    return result
