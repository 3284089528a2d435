"""``/api/v1/docs``: Swagger UI from the portal's own static files.

FastAPI's built-in docs page loads Swagger UI and its favicon from a CDN, so on a
cluster without internet access (the usual case) the page stayed blank. The bundle is
vendored in ``static/vendor/swagger-ui`` (see ``static/vendor/README.md``) and this
page points at it; nothing on it leaves the portal's origin.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from hpcportal.web.common import static_url

VENDOR = "vendor/swagger-ui"


def docs_router(prefix: str, title: str) -> APIRouter:
    """``GET {prefix}/docs``: Swagger UI for ``{prefix}/openapi.json``, assets served
    locally (the app passes ``docs_url=None`` so FastAPI's CDN page is not added)."""
    router = APIRouter(include_in_schema=False)

    @router.get(f"{prefix}/docs", response_class=HTMLResponse)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{prefix}/openapi.json",
            title=f"{title} · API",
            swagger_js_url=static_url(f"{VENDOR}/swagger-ui-bundle.js"),
            swagger_css_url=static_url(f"{VENDOR}/swagger-ui.css"),
            swagger_favicon_url=static_url(f"{VENDOR}/favicon-32x32.png"),
            # No badge from validator.swagger.io: the spec never leaves the site.
            swagger_ui_parameters={"validatorUrl": None},
        )

    return router
