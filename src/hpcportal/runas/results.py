"""What the run-as helper's operations return, as dataclasses: the typed answers of
:class:`~hpcportal.runas.client.AsUser`. Services and routers read these fields,
never a key of the helper's answer; ``pick`` is how an answer becomes one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def pick(kind: type[T], answer: dict[str, Any]) -> T:
    """The dataclass ``kind`` from the answer's keys it names (others ignored)."""
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{k: v for k, v in answer.items() if k in names})


@dataclass(frozen=True, slots=True)
class PathStat:
    """What ``stat`` says of a path (a link inside the root is followed)."""

    path: str
    exists: bool
    type: str = "other"
    size: int = 0
    mtime: float = 0.0
    mode: int = 0
    owner: str = ""
    readable: bool | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """A file written atomically: where, how many bytes, their SHA-256."""

    path: str
    size: int
    sha256: str
    etag: str = ""
    created: bool = True


@dataclass(frozen=True, slots=True)
class Range:
    """The header of a read: the file's size and the byte range that follows it."""

    size: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Described:
    """One file or folder as the helper describes it (``describe`` in helper_read)."""

    name: str
    type: str
    size: int
    mtime: float
    mode: int
    permissions: str
    owner: str
    group: str
    etag: str = ""
    readable: bool | None = None
    writable: bool | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """A path's description and, for a folder, one page of its entries."""

    item: Described
    entries: list[Described] | None = None
    total: int = 0
    offset: int = 0
    limit: int = 0
    sort: str = "name"


@dataclass(frozen=True, slots=True)
class ReadHead:
    """The header of a streamed read: the file, and which bytes follow."""

    name: str
    size: int
    mtime: float
    etag: str
    satisfiable: bool = True
    partial: bool = False
    offset: int = 0
    length: int = 0


@dataclass(frozen=True, slots=True)
class RootState:
    """Whether a root exists for the user, and its free space when asked."""

    root: str
    exists: bool
    accessible: bool = False
    writable: bool | None = None
    error: str | None = None
    device: str | None = None
    total: int | None = None
    used: int | None = None
    available: int | None = None
    percent: float | None = None


@dataclass(frozen=True, slots=True)
class QuotaEntry:
    filesystem: str
    used: int
    soft: int
    hard: int
    files: int
    files_soft: int
    files_hard: int
    over: bool


@dataclass(frozen=True, slots=True)
class RootsReport:
    roots: list[RootState]
    quota_known: bool = False
    quota_reason: str | None = None
    quota: list[QuotaEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrashEntry:
    """One item in a trash folder, as its metadata says (damaged ones are left out)."""

    id: str
    root: str
    path: str
    name: str
    type: str
    size: int
    deleted_at: float


@dataclass(frozen=True, slots=True)
class EntrySize:
    name: str
    type: str
    bytes: int
    disk_bytes: int
    entries: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Sizes:
    complete: bool
    entries: list[EntrySize]


@dataclass(frozen=True, slots=True)
class Copied:
    files: int
    dirs: int
    bytes: int
    skipped: list[str]


@dataclass(frozen=True, slots=True)
class Placed:
    """Where an operation left something: a root, a path in it, maybe a trash id."""

    root: str
    path: str
    trash_id: str | None = None


@dataclass(frozen=True, slots=True)
class UploadStep:
    """A resumable upload's state after a step: bytes held, and whether it is whole."""

    offset: int = 0
    complete: bool = False


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """A resumable upload as the helper knows it: the root, folder, name and id."""

    root: str
    folder: str
    name: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class TerminalStarted:
    pid: int
    cwd: str
    shell: str
