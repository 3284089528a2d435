"""Uploading input files for jobs (multipart), written as the user."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from hpcportal.api.deps import ClientAddress, CurrentUser, DbDep, RunAsDep, SettingsDep
from hpcportal.errors import InvalidInput, PayloadTooLarge
from hpcportal.services import audit, uploads
from hpcportal.services.uploads import IncomingFile, UploadedFile

router = APIRouter(tags=["uploads"])


@router.post("/uploads", response_model=list[UploadedFile], status_code=status.HTTP_201_CREATED)
async def upload(
    request: Request,
    who: CurrentUser,
    settings: SettingsDep,
    runas: RunAsDep,
    db: DbDep,
    address: ClientAddress,
) -> list[UploadedFile]:
    """Upload one or more files (form field ``files``) into a new folder of your upload area.

    The answer's ``id`` values go into a job's ``input_files``; the job then sees
    ``INPUT`` (the first file) and ``FILE_<NAME>`` for each.
    """
    declared = int(request.headers.get("content-length") or 0)
    limit = settings.upload_max_bytes * settings.upload_max_files + 1024 * 1024
    if declared > limit:
        raise PayloadTooLarge(f"The upload is {declared} bytes; the limit is {limit} bytes.")
    form = await request.form(max_files=settings.upload_max_files + 1, max_fields=10)
    try:
        parts = form.getlist("files")
        if not all(isinstance(p, UploadFile) for p in parts):
            raise InvalidInput("The field 'files' must carry files.")
        files = [
            IncomingFile(name=p.filename or "", size=p.size or 0, stream=p.file)
            for p in parts
            if isinstance(p, UploadFile)
        ]
        try:
            stored = await run_in_threadpool(uploads.store, settings, runas, who, files)
        except Exception as exc:
            audit.record(
                db,
                username=who.username,
                action="upload",
                target=", ".join(f.name for f in files)[:500] or None,
                result="refused",
                detail=getattr(exc, "message", str(exc)),
                address=address,
            )
            db.commit()
            raise
    finally:
        await form.close()
    audit.record(
        db,
        username=who.username,
        action="upload",
        target=", ".join(s.path for s in stored)[:500],
        result="ok",
        address=address,
    )
    return stored
