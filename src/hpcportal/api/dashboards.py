"""``/dashboard``: the caller's home dashboard layout and the site's presets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import ValidationError

from hpcportal.dependencies import CurrentUser, DbDep, strict_query
from hpcportal.errors import InvalidInput
from hpcportal.services import dashboards as service
from hpcportal.services.dashboards import Layout, LayoutIn, Preset, ResetIn, Widget

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/layouts", response_model=Layout, dependencies=[strict_query()])
def get_layout(who: CurrentUser, db: DbDep) -> Layout:
    """Your layout, or the ``default`` preset (``source: "preset"``) until you save one."""
    return service.get_layout(db, who)


@router.put("/layouts", response_model=Layout, dependencies=[strict_query()])
def put_layout(
    body: Annotated[LayoutIn | list[Widget], Body()], who: CurrentUser, db: DbDep
) -> Layout:
    """Save your layout: ``{"widgets": [{"type", "x", "y", "w", "h"}, ...]}`` (a bare
    list of widgets is accepted too). The grid has 12 columns; each type at most once."""
    if isinstance(body, LayoutIn):
        return service.save_layout(db, who, body)
    try:
        layout = LayoutIn(widgets=body)
    except ValidationError as exc:
        raise InvalidInput("; ".join(e["msg"] for e in exc.errors())) from None
    return service.save_layout(db, who, layout)


@router.post("/layouts/reset", response_model=Layout, dependencies=[strict_query()])
def reset_layout(
    who: CurrentUser, db: DbDep, body: Annotated[ResetIn | None, Body()] = None
) -> Layout:
    """Back to a preset (``{"preset": "minimal"}``; no body means ``default``)."""
    return service.reset_layout(db, who, (body or ResetIn()).preset)


@router.get("/presets", response_model=list[Preset], dependencies=[strict_query()])
def list_presets(_: CurrentUser) -> list[Preset]:
    """The site's dashboard presets: at least ``default`` and ``minimal``."""
    return service.presets()
