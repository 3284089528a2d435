"""What the file API answers and accepts: pydantic models validated from what the
helper says (the user's own data, trusted for nothing else), and the one operation
body with its mode parser."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from hpcportal.errors import InvalidInput
from hpcportal.limits import Line

Sort = Literal["name", "-name", "size", "-size", "mtime", "-mtime"]

# --- models ---------------------------------------------------------------------------

EntryType = Literal["file", "directory", "symlink", "other"]


class Entry(BaseModel):
    name: str
    path: str
    type: EntryType
    size: int
    mtime: float
    mode: int
    permissions: str
    owner: str
    group: str
    target: str | None = None


class FileInfo(BaseModel):
    """A file or folder; folders add one page of entries."""

    root: str
    path: str
    name: str
    type: EntryType
    size: int
    mtime: float
    mode: int
    permissions: str
    owner: str
    group: str
    etag: str
    readable: bool | None = None
    writable: bool | None = None
    mime: str | None = None


class Listing(FileInfo):
    total: int
    offset: int
    limit: int
    sort: str
    entries: list[Entry]


class RootInfo(BaseModel):
    name: str
    path: str
    accessible: bool
    writable: bool | None = None


class TextPreview(BaseModel):
    kind: Literal["text"] = "text"
    root: str
    path: str
    language: str
    content: str
    size: int
    truncated: bool
    etag: str


class TablePreview(BaseModel):
    kind: Literal["table"] = "table"
    root: str
    path: str
    delimiter: str
    columns: list[str]
    rows: list[list[str]]
    size: int
    truncated: bool
    etag: str


class WriteResult(BaseModel):
    root: str
    path: str
    size: int
    sha256: str
    etag: str
    created: bool


class OpResult(BaseModel):
    op: str
    root: str
    path: str
    to_root: str | None = None
    to: str | None = None
    trash_id: str | None = None
    permanent: bool | None = None
    mode: int | None = None
    files: int | None = None
    dirs: int | None = None
    bytes: int | None = None
    skipped: list[str] | None = None


class TrashItem(BaseModel):
    id: str
    root: str | None  # the root's name, or None if it is not one of yours any more
    root_path: str
    path: str
    name: str
    type: EntryType
    size: int
    deleted_at: datetime


class Space(BaseModel):
    total: int
    used: int
    available: int
    percent: float


class Quota(BaseModel):
    filesystem: str
    used: int
    soft: int
    hard: int
    files: int
    files_soft: int
    files_hard: int
    over: bool


class RootUsage(BaseModel):
    name: str
    path: str
    space: Space | None
    quota: Quota | None = None
    error: str | None = None


class FolderSize(BaseModel):
    name: str
    type: EntryType
    bytes: int
    disk_bytes: int
    entries: int
    complete: bool


class FolderUsage(BaseModel):
    root: str
    path: str
    complete: bool
    entries: list[FolderSize]
    computed_at: datetime


class UsageReport(BaseModel):
    roots: list[RootUsage]
    quota_known: bool
    quota_note: str | None = None
    folder: FolderUsage | None = None


class FileOp(BaseModel):
    """``POST /files/{root}/{path}``: one operation on that path."""

    op: Literal["mkdir", "rename", "move", "copy", "chmod", "restore"]
    to: Line | None = None
    to_root: Line | None = None
    parents: bool = False
    mode: Line | int | None = None  # bounded by parse_mode
    trash_id: Line | None = None


def parse_mode(mode: str | int | None) -> int:
    """``750``, ``0750``, ``0o750`` or an int: permission bits for chmod."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and re.fullmatch(r"(0o?)?[0-7]{1,4}", mode.strip()):
        value = int(mode.strip().removeprefix("0o"), 8)
    else:
        raise InvalidInput("mode must be octal permission bits such as '750'.")
    if not 0 <= value <= 0o3777:
        raise InvalidInput("mode must be permission bits between 0 and 3777 (no setuid).")
    return value
