"""Job templates: the list by category (``/templates``), a new one, and one template's
editor with its history. Saving goes through the API (``/api/v1/templates``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import DatabaseDep
from hpcportal.errors import PortalError
from hpcportal.services import templates as template_service
from hpcportal.services.identity import Principal
from hpcportal.services.template_params import INT_OPTIONS, STR_OPTIONS
from hpcportal.web import i18n
from hpcportal.web.common import PageDep, PageError, in_session, page_error
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)


@router.get("/templates", response_class=HTMLResponse)
async def templates_page(
    page: PageDep, database: DatabaseDep, category: str | None = None
) -> HTMLResponse:
    who = page.user
    assert who is not None
    listing = await run_in_threadpool(
        in_session, database, lambda s: template_service.list_templates(s, who)
    )
    groups: dict[str, list[Any]] = defaultdict(list)
    for item in listing.items:
        if not category or item.category.lower() == category.lower():
            groups[item.category].append(item)
    return page.render(
        "templates.html",
        page_key="templates",
        groups=sorted(groups.items(), key=lambda kv: kv[0].lower()),
        categories=sorted({t.category for t in listing.items}, key=str.lower),
        category=category or "",
    )


def _may_edit(template: template_service.TemplateOut, who: Principal) -> bool:
    return template.scope == "personal" or who.is_admin


@router.get("/templates/new", response_class=HTMLResponse)
async def template_new(page: PageDep, database: DatabaseDep) -> HTMLResponse:
    who = page.user
    assert who is not None
    categories = await run_in_threadpool(
        in_session, database, lambda s: template_service.categories(s, who)
    )
    blank: dict[str, Any] = {
        "id": None,
        "name": "",
        "description": "",
        "category": "",
        "scope": "personal",
        "script": "#!/bin/bash\n\necho {{ message }}\n",
        "options": {},
        "parameters": [
            {"name": "message", "type": "string", "label": "Message", "default": "hello"}
        ],
    }
    return page.render(
        "template_edit.html",
        page_key="templates",
        template=blank,
        history=[],
        may_edit=True,
        categories=categories,
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        option_fields=_option_fields(),
    )


@router.get("/templates/{template_id}", response_class=HTMLResponse)
async def template_page(
    template_id: str,
    page: PageDep,
    database: DatabaseDep,
) -> HTMLResponse:
    who = page.user
    assert who is not None
    if not template_id.isdigit() or not 1 <= int(template_id) < 2**31:
        raise PageError(404, page.gettext(N_("No such template.")))
    number = int(template_id)

    def load(session: Any) -> tuple[Any, Any, list[str]]:
        return (
            template_service.get_template(session, number, who),
            template_service.history(session, number, who),
            template_service.categories(session, who),
        )

    try:
        found, history, categories = await run_in_threadpool(in_session, database, load)
    except PortalError as exc:
        raise page_error(exc) from None
    return page.render(
        "template_edit.html",
        page_key="templates",
        template=found.model_dump(mode="json"),
        template_model=found,
        history=history,
        may_edit=_may_edit(found, who),
        categories=categories,
        parameter_types=i18n.PARAMETER_TYPE_LABELS,
        option_fields=_option_fields(),
    )


def _option_fields() -> list[str]:
    return sorted(INT_OPTIONS | STR_OPTIONS)
