"""Resumable uploads with the tus 1.0 protocol (creation, termination, checksum,
expiration) at ``/api/v1/uploads/tus``; the bytes are written as the user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from hpcportal.api.uploads import close_unless_short
from hpcportal.dependencies import (
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    RunAsDep,
    SettingsDep,
    strict_query,
)
from hpcportal.errors import (
    BadRequest,
    PortalError,
    PreconditionFailed,
    UnsupportedMediaType,
)
from hpcportal.services import audit
from hpcportal.services.files.headers import http_date
from hpcportal.services.tus import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    TUS_VERSION,
    TusService,
    UploadState,
    parse_checksum,
)

router = APIRouter(prefix="/uploads/tus", tags=["uploads"], dependencies=[strict_query()])
OFFSET_TYPE = "application/offset+octet-stream"


async def get_tus(settings: SettingsDep, runas: RunAsDep, database: DatabaseDep) -> TusService:
    return TusService(settings, runas, database)


TusDep = Annotated[TusService, Depends(get_tus)]
TusResumable = Annotated[str | None, Header(alias="Tus-Resumable")]


@contextmanager
def tus_errors() -> Iterator[None]:
    """Every tus answer carries ``Tus-Resumable``, errors included."""
    try:
        yield
    except PortalError as exc:
        exc.headers = {**(exc.headers or {}), "Tus-Resumable": TUS_VERSION}
        raise


def _check_version(version: str | None) -> None:
    if version != TUS_VERSION:
        raise PreconditionFailed(
            f"This server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'.",
            headers={"Tus-Version": TUS_VERSION},
        )


def _int_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest(f"{name} must be a non-negative integer.")
    return int(value)


def _state_headers(state: UploadState) -> dict[str, str]:
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(state.offset),
        "Upload-Expires": http_date(state.expires_at.timestamp()),
        "Cache-Control": "no-store",
    }


def _audit_upload(tus: TusService, username: str, state: UploadState, address: str) -> None:
    with tus.database.session() as session:
        target = f"{state.root}:{state.path}"
        detail = f"{state.length} bytes (tus {state.id})"
        audit.add(session, audit.Event.of(username, "file.upload", target, address, None, detail))


@router.options("", status_code=status.HTTP_204_NO_CONTENT)
async def capabilities(settings: SettingsDep) -> Response:
    """What this tus server supports (no login needed)."""
    return Response(
        status_code=status.HTTP_204_NO_CONTENT,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(settings.tus_max_bytes),
            "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
        },
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_class=Response)
async def create_upload(
    request: Request,
    who: CurrentUser,
    tus: TusDep,
    address: ClientAddress,
    tus_resumable: TusResumable = None,
    upload_length: Annotated[str | None, Header(alias="Upload-Length")] = None,
    upload_metadata: Annotated[str | None, Header(alias="Upload-Metadata")] = None,
    content_type: Annotated[str | None, Header(alias="Content-Type")] = None,
    upload_checksum: Annotated[str | None, Header(alias="Upload-Checksum")] = None,
    content_length: Annotated[str | None, Header(alias="Content-Length")] = None,
) -> Response:
    """Create an upload: ``Upload-Length`` and ``Upload-Metadata`` with ``filename``,
    ``root`` (a file area, default the first) and ``folder`` (inside it, default its
    top). Answers 201 with the upload's ``Location``.

    With a body (``Content-Type: application/offset+octet-stream``, tus
    creation-with-upload) the body is the file's first bytes, written at once; a small
    file is then complete in this one request (``Upload-Offset`` equals its length)."""
    with tus_errors():
        _check_version(tus_resumable)
        length = _int_header(upload_length, "Upload-Length")
        declared = _int_header(content_length, "Content-Length")
        with_body = _is_offset_type(content_type) and declared != 0
        if with_body:
            state = await _with_body(
                request, declared, lambda body: tus.create_with_body(
                    who, length, upload_metadata, content_length=declared,
                    checksum=parse_checksum(upload_checksum), body=body,
                ),
            )  # fmt: skip
        else:
            state = await run_in_threadpool(tus.create, who, length, upload_metadata)
    if state.complete:
        await run_in_threadpool(_audit_upload, tus, who.username, state, address)
    return Response(
        status_code=status.HTTP_201_CREATED,
        headers={**_state_headers(state), "Location": f"{request.url.path.rstrip('/')}/{state.id}"},
    )


def _is_offset_type(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == OFFSET_TYPE


async def _with_body(
    request: Request,
    declared: int | None,
    write: Callable[[AsyncIterator[bytes]], Awaitable[UploadState]],
) -> UploadState:
    """Run ``write`` on the request's body, counting what arrived: refused with the body
    partly unread (a full disk, a body past Upload-Length), the connection is closed
    rather than the rest read on and on to be discarded."""
    received = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal received
        async for chunk in request.stream():
            received += len(chunk)
            yield chunk

    try:
        return await write(body())
    except PortalError as exc:
        raise close_unless_short(exc, declared, received) from None


@router.head("/{upload_id}", response_class=Response)
async def upload_offset(
    upload_id: str, who: CurrentUser, tus: TusDep, tus_resumable: TusResumable = None
) -> Response:
    """Where to resume: ``Upload-Offset`` (and ``Upload-Length``)."""
    with tus_errors():
        _check_version(tus_resumable)
        state = await run_in_threadpool(tus.get, who, upload_id)
    headers = {**_state_headers(state), "Upload-Length": str(state.length)}
    if state.metadata:
        headers["Upload-Metadata"] = state.metadata
    return Response(status_code=status.HTTP_200_OK, headers=headers)


@router.patch("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def append_chunk(
    upload_id: str,
    request: Request,
    who: CurrentUser,
    tus: TusDep,
    address: ClientAddress,
    tus_resumable: TusResumable = None,
    content_type: Annotated[str | None, Header(alias="Content-Type")] = None,
    upload_offset: Annotated[str | None, Header(alias="Upload-Offset")] = None,
    upload_checksum: Annotated[str | None, Header(alias="Upload-Checksum")] = None,
    content_length: Annotated[str | None, Header(alias="Content-Length")] = None,
) -> Response:
    """Append the body at ``Upload-Offset`` (``Content-Type:
    application/offset+octet-stream``); ``Upload-Checksum: sha256 <base64>`` checks
    the chunk (460 if it differs). The file appears when the last byte is in."""
    with tus_errors():
        _check_version(tus_resumable)
        if not _is_offset_type(content_type):
            raise UnsupportedMediaType(f"A PATCH carries Content-Type: {OFFSET_TYPE}.")
        offset = _int_header(upload_offset, "Upload-Offset")
        if offset is None:
            raise BadRequest("Upload-Offset is required.")
        declared = _int_header(content_length, "Content-Length")
        state = await _with_body(
            request, declared, lambda body: tus.append(
                who, upload_id, offset=offset, content_length=declared,
                checksum=parse_checksum(upload_checksum), body=body,
            ),
        )  # fmt: skip
    if state.complete:
        await run_in_threadpool(_audit_upload, tus, who.username, state, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_state_headers(state))


@router.delete("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def terminate_upload(
    upload_id: str, who: CurrentUser, tus: TusDep, tus_resumable: TusResumable = None
) -> Response:
    """Cancel an upload: its partial file and its record go."""
    with tus_errors():
        _check_version(tus_resumable)
        await run_in_threadpool(tus.terminate, who, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Tus-Resumable": TUS_VERSION})
