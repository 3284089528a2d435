"""``/apps``: the interactive app catalog, as the asking user may see it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel

from hpcportal.dependencies import CurrentUser, SessionContextDep
from hpcportal.errors import NotFound
from hpcportal.services.apps import App, FormField

router = APIRouter(tags=["interactive apps"])


class AppOut(BaseModel):
    id: str
    name: str
    description: str
    category: str
    connection: str
    icon_url: str | None
    groups: list[str]
    form: list[FormField]


def app_out(app: App) -> AppOut:
    d = app.definition
    icon = f"/api/v1/apps/{d.id}/icon" if app.icon_path() else None
    return AppOut(
        id=d.id,
        name=d.name,
        description=d.description,
        category=d.category,
        connection=d.connection,
        icon_url=icon,
        groups=d.groups,
        form=d.form,
    )


@router.get("/apps", response_model=list[AppOut])
async def list_apps(who: CurrentUser, ctx: SessionContextDep) -> list[AppOut]:
    """The apps you may launch (apps restricted to groups you are not in are left out)."""
    return [app_out(a) for a in ctx.catalog.visible(who)]


@router.get("/apps/{app_id}", response_model=AppOut)
async def get_app(app_id: str, who: CurrentUser, ctx: SessionContextDep) -> AppOut:
    return app_out(ctx.catalog.get(app_id, who))


@router.get("/apps/{app_id}/icon", response_class=FileResponse)
async def app_icon(app_id: str, who: CurrentUser, ctx: SessionContextDep) -> FileResponse:
    """The app's icon. SVG is served inert: no scripts, nothing loaded from elsewhere."""
    path = ctx.catalog.get(app_id, who).icon_path()
    if path is None:
        raise NotFound("This app has no icon.")
    media = "image/svg+xml" if path.suffix == ".svg" else None
    headers = {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }
    return FileResponse(path, media_type=media, headers=headers)
