"""The file manager page (``/files/{root}/{path}``): file areas, breadcrumbs and a
sortable, paged listing rendered on the server; everything else (previews, edits,
copy and move, search, trash and restore, storage, uploads) goes through the files
API from ``static/js/files.js`` and ``fileops.js``, and the listing is refreshed in
place by fetching this page again.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hpcportal.dependencies import RunAsDep, SettingsDep
from hpcportal.errors import NotFound, PortalError
from hpcportal.services.files import FileInfo, FileService, Listing, RootInfo
from hpcportal.services.files import Sort as FileSort
from hpcportal.web import i18n
from hpcportal.web.common import PageDep
from hpcportal.web.common import page_error as _page_error

router = APIRouter(include_in_schema=False)

#: Entries per page of a folder listing (the API's own cap may be lower).
FILES_PER_PAGE: Final = 200
FILE_SORTS: Final = ("name", "-name", "size", "-size", "mtime", "-mtime")
_SIZE_UNITS: Final = ("KB", "MB", "GB", "TB", "PB")


def human_size(size: int, fmt: i18n.Formatter) -> str:
    """``1.5 MB`` (powers of 1024) in the page's number format."""
    if size < 1024:
        return f"{fmt.number(size)} B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{fmt.number(value, 1)} {unit}"
    raise AssertionError("unreachable")


def file_href(root: str, path: str = "", **query: Any) -> str:
    """The file manager's URL of a folder (or a file, which opens in the preview)."""
    url = "/files/" + quote(root, safe="")
    if path:
        url += "/" + quote(path, safe="/")
    params = {k: v for k, v in query.items() if v not in (None, "", False)}
    return url + ("?" + urlencode(params) if params else "")


@dataclass
class FileView:
    roots: list[RootInfo]
    root: RootInfo | None = None
    folder: Listing | None = None
    selected: FileInfo | None = None


def _file_view(
    files: FileService,
    root: str | None,
    path: str,
    offset: int,
    sort: FileSort,
    hidden: bool,
) -> FileView:
    roots = files.roots()
    if root is None:
        first = next((r for r in roots if r.accessible), None)
        if first is None:
            return FileView(roots)
        root = first.name
    view = FileView(roots, next((r for r in roots if r.name == root), None))
    if view.root is None:
        raise NotFound(f"No file area named {root!r}.")
    info = files.info(root, path, offset=offset, limit=FILES_PER_PAGE, sort=sort, hidden=hidden)
    if not isinstance(info, Listing):
        view.selected = info
        parent = posixpath.dirname(info.path)
        info = files.info(
            root, parent, offset=offset, limit=FILES_PER_PAGE, sort=sort, hidden=hidden
        )
        if not isinstance(info, Listing):  # pragma: no cover - a parent is a folder
            raise NotFound("The folder is gone.")
    view.folder = info
    return view


@router.get("/files", response_class=HTMLResponse)
@router.get("/files/{root}", response_class=HTMLResponse)
@router.get("/files/{root}/{path:path}", response_class=HTMLResponse)
async def files_page(
    page: PageDep,
    settings: SettingsDep,
    runas: RunAsDep,
    root: str | None = None,
    path: str = "",
    sort: FileSort = "name",
    hidden: bool = False,
    page_no: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    """The file manager: areas, breadcrumbs, a sortable paged listing (folders first);
    previews, edits, actions and uploads go through the files API from ``files.js``."""
    who = page.user
    assert who is not None
    files = FileService(settings, runas, who)
    offset = (page_no - 1) * FILES_PER_PAGE
    try:
        view = await run_in_threadpool(_file_view, files, root, path, offset, sort, hidden)
    except PortalError as exc:
        raise _page_error(exc) from None
    folder = view.folder
    crumbs: list[tuple[str, str]] = []
    if folder is not None and view.root is not None:
        walked = ""
        for part in [p for p in folder.path.split("/") if p]:
            walked = f"{walked}/{part}" if walked else part
            crumbs.append((part, file_href(view.root.name, walked, hidden=hidden)))
    total = folder.total if folder is not None else 0
    return page.render(
        "files.html",
        page_key="files",
        view=view,
        folder=folder,
        crumbs=crumbs,
        sort=sort,
        hidden=hidden,
        pages=max(1, -(-total // FILES_PER_PAGE)),
        page_no=page_no,
        file_href=file_href,
        human_size=lambda n: human_size(n, page.fmt),
        mtime=lambda t: page.fmt.dt(datetime.fromtimestamp(t, UTC), "short"),
        edit_max_bytes=settings.file_edit_max_bytes,
        sorts=FILE_SORTS,
    )
