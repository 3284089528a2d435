"""Files and storage, as the user: roots, listings, previews, downloads, edits, operations.

Every call runs the run-as helper as the logged-in user (``services/files/``).
The path in the URL is decoded once by the server and never again, so
``%2e%2e%2f`` arrives as ``../`` and is refused like ``../`` itself.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from hpcportal.api.params import Offset
from hpcportal.db.session import Database
from hpcportal.dependencies import (
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    RunAsDep,
    SettingsDep,
    strict_query,
)
from hpcportal.errors import (
    InvalidInput,
    IsDirectory,
    PayloadTooLarge,
    RangeNotSatisfiable,
)
from hpcportal.services import audit
from hpcportal.services.files.headers import (
    PDF_SECURITY_HEADERS,
    SECURITY_HEADERS,
    content_disposition,
    http_date,
    parse_etags,
    parse_range,
)
from hpcportal.services.files.models import (
    FileInfo,
    FileOp,
    Listing,
    OpResult,
    RootInfo,
    Sort,
    TablePreview,
    TextPreview,
    TrashItem,
    UsageReport,
    WriteResult,
)
from hpcportal.services.files.preview import classify
from hpcportal.services.files.service import FileService, search_lines

router = APIRouter(tags=["files"])


async def get_files(settings: SettingsDep, runas: RunAsDep, who: CurrentUser) -> FileService:
    return FileService(settings, runas, who)


FilesDep = Annotated[FileService, Depends(get_files)]


async def file_headers(response: Response) -> None:
    """``nosniff`` and a restrictive CSP on every answer of this router."""
    response.headers.update(SECURITY_HEADERS)


router.dependencies.append(Depends(file_headers))


# --- roots, trash, usage -----------------------------------------------------------------


@router.get("/files", response_model=list[RootInfo], dependencies=[strict_query()])
async def list_roots(files: FilesDep) -> list[RootInfo]:
    """Your file areas (``file_roots``) that exist; a missing one is not listed."""
    return await run_in_threadpool(files.roots)


@router.get("/files-trash", response_model=list[TrashItem], dependencies=[strict_query()])
async def list_trash(files: FilesDep) -> list[TrashItem]:
    """What you deleted, newest first; restore with ``POST /files/{root}/{path}``
    ``{"op": "restore", "trash_id": ...}``."""
    return await run_in_threadpool(files.trash)


@router.get(
    "/files-usage",
    response_model=UsageReport,
    dependencies=[strict_query("root", "path", "refresh")],
)
async def usage(
    files: FilesDep, root: str | None = None, path: str | None = None, refresh: bool = False
) -> UsageReport:
    """Free space of each of your file areas and your quota (``quota``, when installed);
    with ``root`` (and ``path``) also the sizes of that folder's entries, computed for
    at most ``file_usage_seconds`` and reused for ``file_usage_cache_seconds``
    (``refresh=true`` computes them again)."""
    if path is not None and root is None:
        raise InvalidInput("'path' needs 'root'.")
    return await run_in_threadpool(files.usage, root, path, refresh=refresh)


# --- reading -----------------------------------------------------------------------------

READ_PARAMS = strict_query(
    "offset", "limit", "sort", "hidden", "download", "zip", "preview", "search", "content"
)


@router.get(
    "/files/{root}",
    response_model=Listing | FileInfo,
    dependencies=[READ_PARAMS],
    include_in_schema=False,
)
@router.get(
    "/files/{root}/{path:path}",
    # What the JSON answers can be; the spec adds the byte answers (api/openapi.py).
    response_model=Listing | FileInfo | TextPreview | TablePreview,
    dependencies=[READ_PARAMS],
    responses={
        200: {"description": "A listing, a description, a preview, a download or a zip"},
        206: {"description": "A byte range of the file (Range)"},
        416: {"description": "The range lies beyond the end of the file"},
    },
)
async def read_path(
    files: FilesDep,
    response: Response,
    root: str,
    path: str = "",
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    sort: Sort = "name",
    hidden: bool = False,
    download: bool = False,
    zip_: Annotated[bool, Query(alias="zip")] = False,
    preview: bool = False,
    search: str | None = None,
    content: str | None = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Any:
    """A folder: one page of entries (``offset``, ``limit``, ``sort`` by ``name``,
    ``size`` or ``mtime``, ``-`` for descending; ``hidden`` shows dot files). A file:
    its description with an ``ETag``.

    - ``download=1``: the file's bytes, streamed, with ``Range`` (206) support;
      a folder comes as a zip.
    - ``zip=1``: a folder as a streamed zip archive (links are not followed).
    - ``preview=1``: text (JSON with a ``language`` hint) or CSV/TSV (JSON table),
      both size-capped; images and PDF inline; SVG, HTML and everything else as a
      download.
    - ``search=GLOB`` (``content=TEXT`` optional): matching names below the folder,
      as JSON lines, bounded in time and count; the last line says if it finished.
    """
    if sum((download, zip_, preview, search is not None)) > 1:
        raise InvalidInput("Use only one of download, zip, preview and search.")
    if search is not None:
        stream = await files.open_search(
            root, path, glob=search or "*", content=content or None, hidden=hidden
        )
        return StreamingResponse(
            search_lines(stream, root), media_type="application/x-ndjson", headers=SECURITY_HEADERS
        )
    if content is not None:
        raise InvalidInput("'content' goes with 'search'.")
    if zip_:
        return await _zip_response(files, root, path)
    if download:
        try:
            return await _file_response(files, root, path, range_header, if_range, None)
        except IsDirectory:
            return await _zip_response(files, root, path)
    if preview:
        return await _preview_response(files, root, path, range_header, if_range)
    info = await run_in_threadpool(
        files.info, root, path, offset=offset, limit=limit, sort=sort, hidden=hidden
    )
    response.headers["ETag"] = f'"{info.etag}"'
    return info


async def _file_response(
    files: FileService,
    root: str,
    path: str,
    range_header: str | None,
    if_range: str | None,
    inline_type: str | None,
) -> Response:
    """The file streamed from the helper: constant memory, one helper run."""
    condition = None
    if if_range is not None:
        # An entity tag must be the file's current one; a date is not checked against
        # the tag the helper compares, so it never matches and the whole file is sent.
        quoted = if_range.strip()
        condition = quoted.strip('"') if quoted.startswith('"') else "(a date)"
    stream, head = await files.open_read(
        root, path, byte_range=parse_range(range_header), if_range=condition
    )
    size = head.size
    if not head.satisfiable:
        await stream.aclose()
        raise RangeNotSatisfiable(
            f"The range lies beyond the end of the file ({size} bytes).",
            headers={"Content-Range": f"bytes */{size}", **SECURITY_HEADERS},
        )
    start, length = head.offset, head.length
    name = head.name or posixpath.basename(path) or "download"
    headers = {
        **(PDF_SECURITY_HEADERS if inline_type == "application/pdf" else SECURITY_HEADERS),
        "Accept-Ranges": "bytes",
        "ETag": f'"{head.etag}"',
        "Last-Modified": http_date(head.mtime),
        "Content-Length": str(length),
        "Content-Disposition": content_disposition(name, inline=inline_type is not None),
    }
    code = status.HTTP_200_OK
    if head.partial:
        code = status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return StreamingResponse(
        stream.chunks(),
        status_code=code,
        media_type=inline_type or "application/octet-stream",
        headers=headers,
    )


async def _zip_response(files: FileService, root: str, path: str) -> Response:
    stream, folder = await files.open_zip(root, path)
    name = f"{folder or 'files'}.zip"
    return StreamingResponse(
        stream.chunks(),
        media_type="application/zip",
        headers={**SECURITY_HEADERS, "Content-Disposition": content_disposition(name, False)},
    )


async def _preview_response(
    files: FileService, root: str, path: str, range_header: str | None, if_range: str | None
) -> Response:
    kind, hint = classify(posixpath.basename(path))
    if kind in ("text", "table", "unknown"):
        shown: TextPreview | TablePreview | None = await run_in_threadpool(
            files.preview, root, path, "text" if kind == "unknown" else kind, hint
        )
        if shown is not None:
            return JSONResponse(shown.model_dump(mode="json"), headers=SECURITY_HEADERS)
        kind = "download"
    inline = hint if kind in ("image", "pdf") else None
    return await _file_response(files, root, path, range_header, if_range, inline)


# --- changing ----------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"At most {limit} bytes can be edited here; upload larger files.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"At most {limit} bytes can be edited here; upload larger files.")
    return bytes(body)


@router.put(
    "/files/{root}/{path:path}",
    response_model=WriteResult,
    dependencies=[strict_query()],
    responses={201: {"description": "Created"}, 412: {"description": "Changed meanwhile"}},
)
async def write_file(
    root: str,
    path: str,
    request: Request,
    files: FilesDep,
    settings: SettingsDep,
    database: DatabaseDep,
    address: ClientAddress,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> WriteResult:
    """Save a small UTF-8 text file (the body), atomically. Replacing a file needs
    ``If-Match`` with the ETag you read (412 if it changed since, 428 without it);
    ``If-None-Match: *`` only creates."""
    data = await _read_body(request, settings.file_edit_max_bytes)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("Only UTF-8 text is edited here; upload other files.") from exc
    target = f"{root}:{path}"
    try:
        result = await run_in_threadpool(
            files.write,
            root,
            path,
            data,
            if_match=parse_etags(if_match),
            create_only=(if_none_match or "").strip() == "*",
        )
    except Exception as exc:
        await _audit(database, files, "file.write", target, address, exc)
        raise
    await _audit(database, files, "file.write", target, address, None)
    response.headers["ETag"] = f'"{result.etag}"'
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    return result


@router.post(
    "/files/{root}/{path:path}",
    response_model=OpResult,
    dependencies=[strict_query()],
    responses={201: {"description": "Folder created"}},
)
async def operate(
    root: str,
    path: str,
    body: FileOp,
    files: FilesDep,
    database: DatabaseDep,
    address: ClientAddress,
    response: Response,
) -> OpResult:
    """One operation on the path: ``mkdir`` (``parents``), ``rename``/``move``
    (``to``, ``to_root``; never replaces), ``copy`` (files and folders, links copied
    as links), ``chmod`` (``mode``: ``"750"``), ``restore`` (from the trash: the
    newest item deleted from this path, or ``trash_id``)."""
    target = f"{root}:{path}"
    try:
        result = await run_in_threadpool(files.operate, root, path, body)
    except Exception as exc:
        await _audit(database, files, f"file.{body.op}", target, address, exc)
        raise
    await _audit(database, files, f"file.{body.op}", target, address, None)
    if body.op == "mkdir":
        response.status_code = status.HTTP_201_CREATED
    return result


@router.delete(
    "/files/{root}/{path:path}", response_model=OpResult, dependencies=[strict_query("permanent")]
)
async def delete_path(
    root: str,
    path: str,
    files: FilesDep,
    database: DatabaseDep,
    address: ClientAddress,
    permanent: bool = False,
) -> OpResult:
    """Move to your trash (``~/.hpcportal-trash``, or the file area's own on another
    file system), or delete for good with ``permanent=1``."""
    target = f"{root}:{path}"
    try:
        result = await run_in_threadpool(files.delete, root, path, permanent=permanent)
    except Exception as exc:
        await _audit(database, files, "file.delete", target, address, exc)
        raise
    await _audit(database, files, "file.delete", target, address, None)
    return result


async def _audit(
    database: Database,
    files: FileService,
    action: str,
    target: str,
    address: str,
    error: Exception | None,
) -> None:
    """The action's audit entry, in its own transaction and a worker thread: a busy
    database delays it, and a lost entry is logged, never the answer."""
    await audit.log(database, audit.Event.of(files.who, action, target, address, error))
