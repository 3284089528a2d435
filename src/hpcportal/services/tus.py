"""Resumable uploads: the tus 1.0 core protocol with creation, termination, checksum
(sha256) and expiration, written as the user.

- **create** (``POST``, ``Upload-Length``, ``Upload-Metadata`` with ``filename``,
  ``root`` and ``folder``): the limits are checked (``tus_max_bytes`` per file,
  ``tus_user_max_uploads`` and ``tus_user_max_bytes`` of unfinished uploads per
  user), then the helper, as the user, checks that the file fits (the folder's free
  space for the user and their hard quota there, counting what the user's other
  unfinished uploads into the same area still need: else 507), creates the hidden
  ``.NAME.ID.part`` in the destination folder (refusing if NAME exists), and a
  ``tus_uploads`` row records the upload.
- **append** (``PATCH`` at the recorded ``Upload-Offset``): one request at a time
  per upload (a lock in the row, shared by replicas). The body is streamed to the
  helper's stdin, which appends it to the partial file and answers with the new
  offset. With ``Upload-Checksum: sha256 <base64>`` a chunk whose digest differs
  (or that was cut short) is cut off again and answered 460. When the last byte
  arrives the helper links the partial file to its name (never replacing a file)
  and removes it: the file appears whole or not at all. When the rest of the file
  no longer fits, or the disk or quota fills while writing (ENOSPC, EDQUOT), the
  helper removes the partial file and the row goes too: 507, and the upload is
  over (a later ``HEAD`` is 404), so no partial file fills the user's area.
- **resume** (``HEAD``): the recorded offset. A request cut off mid-body keeps what
  the helper received (without a checksum), so the client resumes from there.
- **terminate** (``DELETE``): the partial file and the row go.

The database is the record of the offset; the partial file is cut back to it if a
crash left more, so the two never disagree for long.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, func, select, update
from starlette.requests import ClientDisconnect

from hpcportal.config import Settings
from hpcportal.db.models import TusUpload
from hpcportal.db.session import Database
from hpcportal.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    PortalError,
)
from hpcportal.runas import HelperStream, RunAs
from hpcportal.runas.client import AsUser, finish_upload
from hpcportal.runas.results import UploadStep, UploadTarget
from hpcportal.services.auth import utcnow
from hpcportal.services.files.paths import check_name, clean_path, root_named
from hpcportal.services.identity import Principal

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = "sha256"
#: A lock older than this belongs to a request that died; streaming refreshes it.
LOCK_STALE = timedelta(seconds=120)
LOCK_REFRESH_SECONDS = 30.0
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    offset: int
    length: int
    metadata: str | None
    expires_at: datetime
    complete: bool
    root: str
    path: str  # inside the root: folder/filename


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional)."""
    result: dict[str, str] = {}
    if not header:
        return result
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not _META_KEY.fullmatch(parts[0]) or parts[0] in result:
            raise BadRequest(f"Malformed Upload-Metadata pair {pair.strip()[:80]!r}.")
        try:
            value = base64.b64decode(parts[1], validate=True).decode() if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadRequest(f"Upload-Metadata {parts[0]!r} is not base64 UTF-8.") from exc
        result[parts[0]] = value
    return result


def parse_checksum(header: str | None) -> str | None:
    """``Upload-Checksum: sha256 <base64 digest>`` as a hex digest."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise BadRequest(f"Checksum algorithm {algorithm!r} is not supported; use sha256.")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise BadRequest("Upload-Checksum is not base64.") from exc
    if len(digest) != 32:
        raise BadRequest("A sha256 Upload-Checksum is 32 bytes.")
    return digest.hex()


def _state(row: TusUpload) -> UploadState:
    folder = row.folder
    return UploadState(
        id=row.id,
        offset=row.received,
        length=row.length,
        metadata=row.upload_metadata,
        expires_at=row.expires_at,
        complete=row.completed_at is not None,
        root=row.root_name,
        path=f"{folder}/{row.filename}" if folder else row.filename,
    )


def _target(row: TusUpload) -> UploadTarget:
    """Where the helper keeps the upload: its root, folder, name and id."""
    return UploadTarget(row.root_path, row.folder, row.filename, row.id)


class TusService:
    """tus uploads for one process: the database and the run-as boundary."""

    def __init__(self, settings: Settings, runas: RunAs, database: Database) -> None:
        self.settings = settings
        self.runas = runas
        self.database = database

    def _as(self, who: Principal) -> AsUser:
        return AsUser(self.runas, who.username, umask=self.settings.file_umask)

    # --- create ------------------------------------------------------------------

    def _prepare(
        self, who: Principal, length: int | None, metadata: str | None
    ) -> tuple[TusUpload, int]:
        """A new upload's row (not stored yet), after the limits, and what the user's
        other unfinished uploads into the same area still need (``reserved``)."""
        if length is None:
            raise BadRequest("Upload-Length is required (deferred lengths are not supported).")
        if length < 0:
            raise BadRequest("Upload-Length must not be negative.")
        if length > self.settings.tus_max_bytes:
            raise PayloadTooLarge(
                f"The file is {length} bytes; the limit is {self.settings.tus_max_bytes} bytes.",
                headers={"Tus-Max-Size": str(self.settings.tus_max_bytes)},
            )
        meta = parse_metadata(metadata)
        name = check_name(meta.get("filename") or meta.get("name") or "")
        roots = self.settings.file_roots
        root = root_named(self.settings, who, meta.get("root") or (roots[0].name if roots else ""))
        folder = clean_path(meta.get("folder") or "")
        self.expire(who)
        unfinished = (TusUpload.username == who.username, TusUpload.completed_at.is_(None))
        with self.database.session() as session:
            count, pending = session.execute(
                select(func.count(), func.coalesce(func.sum(TusUpload.length), 0)).where(
                    *unfinished
                )
            ).one()
            # What the user's other unfinished uploads into this area still need: the
            # room check counts it, so several uploads cannot each claim the same space.
            reserved = session.scalar(
                select(func.coalesce(func.sum(TusUpload.length - TusUpload.received), 0)).where(
                    *unfinished, TusUpload.root_path == root.path
                )
            )
        if count >= self.settings.tus_user_max_uploads:
            raise Conflict(
                f"You have {count} unfinished uploads; finish or cancel one first "
                f"(at most {self.settings.tus_user_max_uploads})."
            )
        if int(pending) + length > self.settings.tus_user_max_bytes:
            raise PayloadTooLarge(
                f"Unfinished uploads may hold at most {self.settings.tus_user_max_bytes} bytes "
                f"per person; yours hold {int(pending)}."
            )
        now = utcnow()
        row = TusUpload(
            id=secrets.token_hex(16),
            username=who.username,
            root_name=root.name,
            root_path=root.path,
            folder=folder,
            filename=name,
            length=length,
            received=0,
            upload_metadata=metadata,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=self.settings.tus_expire_seconds),
        )
        return row, int(reserved or 0)

    def create(self, who: Principal, length: int | None, metadata: str | None) -> UploadState:
        row, reserved = self._prepare(who, length, metadata)
        helper = self._as(who)
        helper.upload_create(_target(row), length=row.length, reserved=reserved)
        try:
            if row.length == 0:  # complete on creation: link the empty file now
                step = helper.upload_append(_target(row), offset=0, length=0, data=b"")
                row.completed_at = row.created_at if step.complete else None
            with self.database.session() as session:
                session.add(row)
        except BaseException:
            helper.upload_abort(_target(row))
            raise
        return _state(row)

    async def create_with_body(
        self,
        who: Principal,
        length: int | None,
        metadata: str | None,
        *,
        content_length: int | None,
        checksum: str | None,
        body: AsyncIterator[bytes],
    ) -> UploadState:
        """tus creation-with-upload: create the upload and write the request's body
        into it with one run of the helper, which checks the room, writes the hidden
        partial file, fsyncs it and links it to its name once whole. A small file thus
        costs one request and one helper run instead of two of each. The row is stored
        first, locked, so the per-user limits count it and no PATCH can interleave; a
        refused body removes the partial file and the row (the client starts again), a
        body cut short is kept, to be resumed like any other."""
        row, reserved = await run_in_threadpool(self._prepare, who, length, metadata)
        if content_length is not None and content_length > row.length:
            raise PayloadTooLarge(
                f"The body would take the upload past its Upload-Length ({row.length})."
            )
        token = secrets.token_hex(16)
        row.lock_token, row.locked_at = token, row.created_at
        await run_in_threadpool(self._store, row)
        try:
            stream = await self._as(who).open_upload_create(
                _target(row), length=row.length, reserved=reserved, expected=content_length,
                checksum=checksum,
            )  # fmt: skip
            step = await self._send(stream, body, row.id, token)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._abort_quietly, who, row)
            raise
        await self._release(row, token, step)
        return _state(row)

    def _store(self, row: TusUpload) -> None:
        with self.database.session() as session:
            session.add(row)

    def _abort_quietly(self, who: Principal, row: TusUpload) -> None:
        """Remove a failed new upload: its partial file (if any) and its row."""
        with contextlib.suppress(PortalError):
            self._as(who).upload_abort(_target(row))
        self._forget(row.id)

    def expire(self, who: Principal) -> int:
        """Remove the user's expired uploads (their partial files, as the user)."""
        now = utcnow()
        with self.database.session() as session:
            rows = list(
                session.scalars(
                    select(TusUpload).where(
                        TusUpload.username == who.username, TusUpload.expires_at < now
                    )
                )
            )
        for row in rows:
            if row.completed_at is None:
                # A folder that is gone or no longer ours leaves nothing to remove.
                with contextlib.suppress(PortalError):
                    self._as(who).upload_abort(_target(row))
            with self.database.session() as session:
                session.execute(delete(TusUpload).where(TusUpload.id == row.id))
        return len(rows)

    # --- read --------------------------------------------------------------------

    def get(self, who: Principal, upload_id: str) -> UploadState:
        with self.database.session() as session:
            row = session.get(TusUpload, upload_id)
        if row is None or row.username != who.username or row.expires_at < utcnow():
            raise NotFound("No such upload (it may have expired or been cancelled).")
        return _state(row)

    # --- append ------------------------------------------------------------------

    def _take_lock(
        self, who: Principal, upload_id: str, *, complete_too: bool
    ) -> tuple[TusUpload | None, str | None]:
        """Compare-and-set the upload's lock (free or stale) for its owner; the row as it
        is now, and the token if this request took the lock. Appends never lock a
        complete upload; termination (``complete_too``) does."""
        token = secrets.token_hex(16)
        now = utcnow()
        conditions = [
            TusUpload.id == upload_id,
            TusUpload.username == who.username,
            (TusUpload.lock_token.is_(None)) | (TusUpload.locked_at < now - LOCK_STALE),
        ]
        if not complete_too:
            conditions.append(TusUpload.completed_at.is_(None))
        with self.database.session() as session:
            result = session.execute(
                update(TusUpload).where(*conditions).values(lock_token=token, locked_at=now)
            )
            taken = int(getattr(result, "rowcount", 0) or 0)
            row = session.get(TusUpload, upload_id)
        if row is None or row.username != who.username:
            return None, None
        return row, token if taken else None

    def _lock(self, who: Principal, upload_id: str, offset: int) -> tuple[TusUpload, str]:
        row, token = self._take_lock(who, upload_id, complete_too=False)
        if row is None or row.expires_at < utcnow():
            raise NotFound("No such upload (it may have expired or been cancelled).")
        if token is None:
            if row.completed_at is not None:
                raise Conflict(
                    "The upload is complete already.", headers={"Upload-Offset": str(row.received)}
                )
            raise Conflict("Another request is writing to this upload; try again shortly.")
        if row.received != offset:
            self._unlock(row.id, token)
            raise Conflict(
                f"Upload-Offset is {offset}, but the upload holds {row.received} bytes.",
                headers={"Upload-Offset": str(row.received)},
            )
        return row, token

    def _unlock(self, upload_id: str, token: str, **values: object) -> None:
        with self.database.session() as session:
            session.execute(
                update(TusUpload)
                .where(TusUpload.id == upload_id, TusUpload.lock_token == token)
                .values(lock_token=None, locked_at=None, **values)
            )

    def _refresh_lock(self, upload_id: str, token: str) -> None:
        with self.database.session() as session:
            session.execute(
                update(TusUpload)
                .where(TusUpload.id == upload_id, TusUpload.lock_token == token)
                .values(locked_at=utcnow())
            )

    async def append(
        self,
        who: Principal,
        upload_id: str,
        *,
        offset: int,
        content_length: int | None,
        checksum: str | None,
        body: AsyncIterator[bytes],
    ) -> UploadState:
        """Stream ``body`` into the upload at ``offset``; the new state."""
        row, token = await run_in_threadpool(self._lock, who, upload_id, offset)
        step: UploadStep | None = None
        removed = False
        try:
            if content_length is not None and offset + content_length > row.length:
                raise PayloadTooLarge(
                    f"The chunk would take the upload past its Upload-Length ({row.length})."
                )
            stream = await self._as(who).open_upload_append(
                _target(row), offset=offset, length=row.length, expected=content_length,
                checksum=checksum,
            )  # fmt: skip
            step = await self._send(stream, body, row.id, token)
        except InsufficientStorage as exc:
            # The helper removed the partial file (the rest cannot fit): the upload is
            # over, so its row goes too and the client is told to start again.
            removed = True
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._forget, row.id)
            raise InsufficientStorage(
                f"{exc.message} The upload is cancelled; free some space and upload the "
                "file again.",
                headers=exc.headers,
            ) from exc
        finally:
            if not removed:
                await self._release(row, token, step)
        return _state(row)

    def _forget(self, upload_id: str) -> None:
        with self.database.session() as session:
            session.execute(delete(TusUpload).where(TusUpload.id == upload_id))

    async def _release(self, row: TusUpload, token: str, step: UploadStep | None) -> None:
        """Record what the helper answered (offset, completion) in the row and free the
        lock, whatever happened to the request."""
        now = utcnow()
        row.received = step.offset if step else row.received
        values: dict[str, object] = {"updated_at": now, "received": row.received}
        if step:
            expires = now + timedelta(seconds=self.settings.tus_expire_seconds)
            values["expires_at"] = row.expires_at = expires
        if step and step.complete:
            values["completed_at"] = row.completed_at = now
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(self._unlock, row.id, token, **values)

    async def _send(
        self, stream: HelperStream, body: AsyncIterator[bytes], upload_id: str, token: str
    ) -> UploadStep:
        """Feed the body to the helper's upload step, end its input and return what it
        answers; the helper is closed whatever happens."""
        try:
            await self._feed(stream.write, body, upload_id, token)
            await stream.end_input()
            return await finish_upload(stream, 900)
        finally:
            await stream.aclose()

    async def _feed(
        self,
        write: Callable[[bytes], Awaitable[bool]],
        body: AsyncIterator[bytes],
        upload_id: str,
        token: str,
    ) -> None:
        """Copy the request body to the helper; a client that goes away ends the body
        (what arrived is kept), a helper that stops reading ends it too."""
        refreshed = time.monotonic()
        try:
            async for chunk in body:
                if chunk and not await write(chunk):
                    return
                if time.monotonic() - refreshed > LOCK_REFRESH_SECONDS:
                    refreshed = time.monotonic()
                    await run_in_threadpool(self._refresh_lock, upload_id, token)
        except ClientDisconnect:
            return

    # --- terminate ---------------------------------------------------------------

    def terminate(self, who: Principal, upload_id: str) -> None:
        state = self.get(who, upload_id)
        row, token = self._lock_any(who, upload_id)
        try:
            if not state.complete:
                self._as(who).upload_abort(_target(row))
        except BaseException:
            self._unlock(row.id, token)
            raise
        with self.database.session() as session:
            session.execute(delete(TusUpload).where(TusUpload.id == upload_id))

    def _lock_any(self, who: Principal, upload_id: str) -> tuple[TusUpload, str]:
        """The lock for termination (complete uploads too)."""
        row, token = self._take_lock(who, upload_id, complete_too=True)
        if row is None:
            raise NotFound("No such upload (it may have expired or been cancelled).")
        if token is None:
            raise Conflict("A request is writing to this upload; try again shortly.")
        return row, token
