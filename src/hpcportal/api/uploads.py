"""Uploading input files for jobs (multipart), streamed to the user's area as the user."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from hpcportal.api.deps import ClientAddress, CurrentUser, DbDep, RunAsDep, SettingsDep
from hpcportal.errors import InvalidInput, PortalError
from hpcportal.services import audit
from hpcportal.services.uploads import UploadedFile, UploadReceiver

router = APIRouter(tags=["uploads"])


@router.post(
    "/uploads",
    response_model=list[UploadedFile],
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {"description": "A file, the file count or the request is over its limit"},
        507: {"description": "The files do not fit in your free space or quota"},
    },
)
async def upload(
    request: Request,
    who: CurrentUser,
    settings: SettingsDep,
    runas: RunAsDep,
    db: DbDep,
    address: ClientAddress,
) -> list[UploadedFile]:
    """Upload one or more files (form field ``files``) into a new folder of your upload area.

    The body is written as it arrives (a chunked body too), each file at most
    ``upload_max_bytes``, at most ``upload_max_files`` of them; a refused or failed
    request leaves nothing behind. The answer's ``id`` values go into a job's
    ``input_files``; the job then sees ``INPUT`` (the first file) and ``FILE_<NAME>``
    for each.
    """
    declared = request.headers.get("content-length")
    if declared is not None and not declared.strip().isdigit():
        raise InvalidInput("Content-Length must be a non-negative integer.")
    try:
        receiver = UploadReceiver(
            settings,
            runas,
            who,
            request.headers.get("content-type"),
            int(declared) if declared is not None else None,
        )
    except PortalError as exc:
        raise _closing(exc) from None
    try:
        stored = await receiver.receive(request.stream())
    except Exception as exc:
        if isinstance(exc, PortalError):
            _closing(exc)
        audit.record(
            db,
            username=who.username,
            action="upload",
            target=", ".join(receiver.names)[:500] or None,
            result="refused",
            detail=getattr(exc, "message", str(exc)),
            address=address,
        )
        db.commit()
        raise
    audit.record(
        db,
        username=who.username,
        action="upload",
        target=", ".join(s.path for s in stored)[:500],
        result="ok",
        address=address,
    )
    return stored


def _closing(exc: PortalError) -> PortalError:
    """Refused before or in the middle of the body: close the connection after the
    answer, so the server neither reads nor discards what the client still sends."""
    exc.headers = {**(exc.headers or {}), "Connection": "close"}
    return exc
