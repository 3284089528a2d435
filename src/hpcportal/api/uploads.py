"""Uploading input files for jobs (multipart), streamed to the user's area as the user."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from hpcportal.dependencies import ClientAddress, CurrentUser, DbDep, RunAsDep, SettingsDep
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
    header = request.headers.get("content-length")
    if header is not None and not header.strip().isdigit():
        raise InvalidInput("Content-Length must be a non-negative integer.")
    declared = int(header) if header is not None else None
    try:
        receiver = UploadReceiver(
            settings, runas, who, request.headers.get("content-type"), declared
        )
    except PortalError as exc:
        raise close_unless_short(exc, declared, 0) from None
    try:
        stored = await receiver.receive(request.stream())
    except Exception as exc:
        if isinstance(exc, PortalError):
            close_unless_short(exc, declared, receiver.received)
        names = ", ".join(receiver.names)[:500] or None
        problem = getattr(exc, "message", str(exc))
        audit.add(db, audit.Event(who.username, "upload", names, address, "refused", problem))
        db.commit()
        raise
    names = ", ".join(s.path for s in stored)[:500]
    audit.add(db, audit.Event.of(who, "upload", names, address))
    return stored


#: A refused request whose declared rest is at most this is read to its end (and
#: discarded), so a browser still sending it gets the answer; a longer or chunked one
#: (no end announced) is cut off: the connection closes after the answer.
DRAIN_MAX_BYTES = 8 * 1024 * 1024


def close_unless_short(exc: PortalError, declared: int | None, received: int) -> PortalError:
    """Refused before or in the middle of the body: add ``Connection: close`` unless
    what the client still has to send is declared and short."""
    if declared is None or declared - received > DRAIN_MAX_BYTES:
        exc.headers = {**(exc.headers or {}), "Connection": "close"}
    return exc
