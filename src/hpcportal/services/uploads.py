"""Input files for jobs: a multipart request streamed into the user's upload area, as the user.

The body is parsed as it arrives (python-multipart's streaming parser) and each
file's bytes go straight to the run-as helper, which writes them, as the user, under
a hidden temporary name and links the file into place once it ended: nothing is
spooled on the portal's host, not in memory beyond one received chunk and not in a
temporary file. The limits hold as bytes arrive, so a body without a declared
length (chunked) is refused with 413 as soon as it crosses one: a file over
``upload_max_bytes``, more than ``upload_max_files`` files, the whole request over
their product. A declared ``Content-Length`` is checked before any byte is read,
against the limit and against the room the user has where the files go (free space
and quota, measured as the user by the helper: else 507).

Files land in a fresh folder per request; an existing file is never replaced. A
request that fails for any reason (a bad name, a limit, a full disk or quota, a
client that went away) removes what it wrote: the folder goes, and the helper
removes the temporary file of the file it was writing.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import secrets
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput, PayloadTooLarge, PortalError
from hpcportal.runas import HelperStream, RunAs
from hpcportal.runas.client import AsUser, finish_write
from hpcportal.services.identity import Principal
from hpcportal.services.user_paths import user_area

_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
#: Form fields other than ``files`` are ignored, but bounded like everything else.
MAX_FIELDS = 10
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
#: Room for the multipart framing (boundaries, part headers) beyond the files' bytes.
ENVELOPE_BYTES = 1024 * 1024
_END_FRAME = struct.pack(">I", 0)


class UploadedFile(BaseModel):
    id: str
    name: str
    path: str
    size: int
    sha256: str


def check_name(name: str) -> str:
    """Refuse names that are paths or could hide: ``../x``, ``a/b``, ``.hidden``, NUL."""
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise InvalidInput(
            f"File name {name!r} is not allowed: give a plain name without '/', '\\\\' "
            "or control characters."
        )
    if name.startswith(".") or len(name.encode()) > 255:
        raise InvalidInput(f"File name {name!r} is not allowed: no leading dot, at most 255 bytes.")
    return name


def request_limit(settings: Settings) -> int:
    """The most bytes one upload request may carry."""
    return settings.upload_max_bytes * settings.upload_max_files + ENVELOPE_BYTES


def check_declared(settings: Settings, declared: int | None) -> None:
    """A declared ``Content-Length`` over the limit is refused before reading the body."""
    limit = request_limit(settings)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The upload is {declared} bytes; the limit is {limit} bytes.")


class _Events:
    """python-multipart's callbacks, collected: the parser calls them synchronously
    while it parses one chunk, and the receiver acts on them (writing to the helper
    is asynchronous) before the next chunk is read. Data is copied out of the chunk,
    so at most one chunk's bytes wait here."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header()

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_name) + len(self._header_value) > MAX_HEADER_BYTES:
            raise InvalidInput(f"A part header is longer than {MAX_HEADER_BYTES} bytes.")

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        self.pending.append(("part", self._disposition))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.pending.append(("data", bytes(data[start:end])))

    def _part_end(self) -> None:
        self.pending.append(("end", b""))


class UploadReceiver:
    """One multipart upload request of ``who``, streamed into a new folder of their
    upload area (``upload_root``) through the run-as helper."""

    def __init__(
        self,
        settings: Settings,
        runas: RunAs,
        who: Principal,
        content_type: str | None,
        declared: int | None,
    ) -> None:
        check_declared(settings, declared)
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidInput("Send the files as multipart/form-data in the field 'files'.")
        charset = params.get(b"charset", b"utf-8").decode("latin-1")
        try:
            self.charset = codecs.lookup(charset).name
        except LookupError:
            self.charset = "latin-1"
        self.settings = settings
        self.runas = runas
        self.who = who
        self.declared = declared
        self.helper = AsUser(runas, who.username)
        self.area = user_area(settings, who, settings.upload_root)
        self.batch = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.folder_made = False
        self.names: list[str] = []
        self.stored: list[UploadedFile] = []
        self.received = 0
        self.fields = 0
        self.field_bytes = 0
        self._events = _Events()
        self._parser = MultipartParser(boundary, self._events.callbacks())  # type: ignore[arg-type]
        self._file: HelperStream | None = None
        self._file_name = ""
        self._file_bytes = 0
        self._in_field = False

    async def receive(self, body: AsyncIterator[bytes]) -> list[UploadedFile]:
        """Parse and write the whole body; on any failure remove what was written."""
        try:
            async for chunk in body:
                self.received += len(chunk)
                if self.received > request_limit(self.settings):
                    raise PayloadTooLarge(
                        f"The upload is larger than the limit of {request_limit(self.settings)} "
                        "bytes."
                    )
                self._parse(chunk)
                await self._act()
            self._parser.finalize()
            if self._file is not None or self._in_field:
                raise InvalidInput("The upload ended in the middle of a file.")
            if not self.stored:
                raise InvalidInput("No files were sent; use the form field 'files'.")
        except BaseException as exc:
            await self._discard()
            if isinstance(exc, ClientDisconnect):
                raise InvalidInput("The upload was cut short; nothing was kept.") from exc
            raise
        return self.stored

    def _parse(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidInput(f"The multipart body is malformed: {exc}") from exc

    async def _act(self) -> None:
        events, self._events.pending = self._events.pending, []
        for kind, data in events:
            if kind == "part":
                await self._begin(data)
            elif kind == "data":
                await self._write(data)
            elif self._file is not None:
                await self._finish()
            else:
                self._in_field = False

    async def _begin(self, disposition: bytes) -> None:
        _, options = parse_options_header(disposition)
        field = options.get(b"name", b"").decode(self.charset, "replace")
        if b"filename" not in options:
            if field == "files":
                raise InvalidInput("The field 'files' must carry files.")
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise InvalidInput(f"At most {MAX_FIELDS} form fields besides 'files'.")
            self._in_field = True
            return
        if field != "files":
            raise InvalidInput(f"Unexpected file field {field!r}; use the form field 'files'.")
        name = check_name(options[b"filename"].decode(self.charset, "replace"))
        if len(self.names) >= self.settings.upload_max_files:
            raise InvalidInput(f"At most {self.settings.upload_max_files} files per upload.")
        if name in self.names:
            raise InvalidInput(f"Two files are named {name!r}.")
        self.names.append(name)
        if not self.folder_made:
            await self._make_folder()
        self._file_name, self._file_bytes = name, 0
        self._file = await self.helper.open_framed_write(
            self.area, f"{self.batch}/{name}", max_size=self.settings.upload_max_bytes
        )

    async def _make_folder(self) -> None:
        """The request's folder, made as the user, who must have room for the declared
        body there (free space and quota, measured by the helper as them)."""
        await run_in_threadpool(
            partial(self.helper.make_folder, self.area, self.batch, room_for=self.declared or 0)
        )
        self.folder_made = True

    async def _write(self, data: bytes) -> None:
        if self._file is None:
            if self._in_field:
                self.field_bytes += len(data)
                if self.field_bytes > MAX_FIELD_BYTES:
                    raise PayloadTooLarge(f"Form fields may hold at most {MAX_FIELD_BYTES} bytes.")
            return
        self._file_bytes += len(data)
        limit = self.settings.upload_max_bytes
        if self._file_bytes > limit:
            raise PayloadTooLarge(
                f"{self._file_name} is more than {limit} bytes; the limit is {limit} bytes."
            )
        if not await self._file.write(struct.pack(">I", len(data)) + data):
            await self._finish()  # the helper stopped reading: its answer says why

    async def _finish(self) -> None:
        stream, self._file = self._file, None
        assert stream is not None
        try:
            await stream.write(_END_FRAME)
            await stream.end_input()
            done = await finish_write(stream, 600)
        finally:
            await stream.aclose()
        self.stored.append(
            UploadedFile(
                id=f"{self.batch}/{self._file_name}",
                name=self._file_name,
                path=f"{self.area}/{self.batch}/{self._file_name}",
                size=done.size,
                sha256=done.sha256,
            )
        )

    async def _discard(self) -> None:
        """Remove what this request wrote: the file being written (the helper removes
        its temporary file when its input ends without the end frame) and the folder."""
        stream, self._file = self._file, None
        with anyio.CancelScope(shield=True):  # also when the request was cancelled
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.end_input()
                    await stream.answer(timeout=30)
                await stream.aclose()
            if self.folder_made:
                remove = partial(self.helper.delete, self.area, self.batch, permanent=True)
                with contextlib.suppress(PortalError):
                    await run_in_threadpool(remove)
