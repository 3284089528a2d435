"""Files and storage, as the user: browse, preview, edit, move, copy, trash, download.

Every file access runs through the run-as helper *as the asking user* (its
``helper_files`` operations), so the kernel decides what may be read or changed; a
403 here is the system's EACCES, never a portal rule. The portal only names a root
(from ``file_roots``: ``{home}``, ``/scratch/{user}``, ...) and a path inside it.

Paths are checked twice: here (``clean_path``: no ``..``, no absolute path, no NUL,
and no second percent-decoding — the router decodes once, so ``%2e%2e%2f`` arrives
as ``../`` and is refused) and again by the helper, which walks the path from the
root's descriptor with ``O_NOFOLLOW`` and refuses a link that leads out of the
root. What the helper answers is the user's own data: it is validated into the
models below, never trusted for anything else.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import mimetypes
import posixpath
import pwd
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.limits import Line
from hpcportal.runas import RunAs
from hpcportal.runas.boundary import HelperStream
from hpcportal.services.identity import Principal

Sort = Literal["name", "-name", "size", "-size", "mtime", "-mtime"]
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

# --- roots and paths ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Root:
    name: str
    path: str


def fill(pattern: str, who: Principal) -> str:
    """A root pattern for ``who``: ``{home}`` and ``{user}`` replaced; an absolute path."""
    home = pwd.getpwnam(who.username).pw_dir
    path = pattern.replace("{home}", home).replace("{user}", who.username)
    if not path.startswith("/") or "\0" in path or "/../" in f"{path}/":
        raise InvalidInput(f"The configured file root {pattern!r} is not an absolute path.")
    return path.rstrip("/") or "/"


def roots_of(settings: Settings, who: Principal) -> list[Root]:
    return [Root(r.name, fill(r.path, who)) for r in settings.file_roots]


def root_named(settings: Settings, who: Principal, name: str) -> Root:
    for root in settings.file_roots:
        if root.name == name:
            return Root(root.name, fill(root.path, who))
    known = ", ".join(r.name for r in settings.file_roots)
    raise NotFound(f"There is no file area {name!r}; known: {known}.")


def clean_path(path: str) -> str:
    """A root-relative path as the helper wants it, or InvalidInput.

    Refused: NUL bytes, absolute paths (also after a leading ``./``), ``..`` anywhere.
    Empty components and ``.`` are dropped (``a//./b`` is ``a/b``). Nothing is
    percent-decoded here: the router has decoded the URL once already.
    """
    if "\0" in path:
        raise InvalidInput("The path contains a NUL byte.")
    if path.startswith("/"):
        raise InvalidInput("The path must be relative to its file area, not absolute.")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidInput("The path is too long.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput("'..' is not allowed in a path.")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        raise InvalidInput("A name in the path is longer than 255 bytes.")
    return "/".join(parts)


def check_name(name: str) -> str:
    """A single file name (uploads, new names): no '/', control characters, '.' or '..'."""
    if not name or name in (".", "..") or re.search(r"[/\x00-\x1f\x7f]", name):
        raise InvalidInput(f"{name!r} is not a valid file name.")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidInput("A file name is at most 255 bytes.")
    return name


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


class _SizeCache:
    """Folder sizes per (user, root path, folder) for ``file_usage_cache_seconds``:
    walking a big tree costs seconds of the user's disk, so a page that asks again
    (or a second tab) gets the same answer instead. Bounded; oldest dropped first."""

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, str], tuple[float, FolderUsage]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str], seconds: float) -> FolderUsage | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] > seconds:
            return None
        return found[1]

    def put(self, key: tuple[str, str, str], value: FolderUsage) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (time.monotonic(), value)
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))


FOLDER_SIZES = _SizeCache()


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


# --- preview classification -----------------------------------------------------------

INLINE_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".avif": "image/avif",
}
TABLES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
#: Never shown inline, whatever else they are: they can carry scripts.
DOWNLOAD_ONLY = {".svg", ".svgz", ".html", ".htm", ".xhtml", ".xht", ".mht", ".mhtml"}
LANGUAGES = {
    ".py": "python", ".pyi": "python", ".ipynb": "json", ".sh": "bash", ".bash": "bash",
    ".zsh": "bash", ".slurm": "bash", ".sbatch": "bash", ".pbs": "bash", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".cu": "cuda",
    ".f": "fortran", ".f90": "fortran", ".f95": "fortran", ".f03": "fortran", ".for": "fortran",
    ".r": "r", ".jl": "julia", ".m": "matlab", ".java": "java", ".js": "javascript",
    ".ts": "typescript", ".go": "go", ".rs": "rust", ".pl": "perl", ".rb": "ruby",
    ".lua": "lua", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".xml": "xml", ".md": "markdown",
    ".rst": "restructuredtext", ".tex": "latex", ".css": "css", ".sql": "sql",
    ".txt": "plaintext", ".log": "plaintext", ".out": "plaintext", ".err": "plaintext",
    ".def": "plaintext", ".cmake": "cmake", ".mk": "makefile", ".diff": "diff",
    ".patch": "diff", ".dat": "plaintext",
}  # fmt: skip
NAMED_LANGUAGES = {"makefile": "makefile", "dockerfile": "dockerfile", "cmakelists.txt": "cmake"}

PreviewKind = Literal["text", "table", "image", "pdf", "download", "unknown"]


def classify(name: str) -> tuple[PreviewKind, str | None]:
    """How a file is previewed, by name: (kind, language / media type / delimiter)."""
    lower = name.lower()
    ext = posixpath.splitext(lower)[1]
    if ext in DOWNLOAD_ONLY:
        return "download", None
    if ext in INLINE_IMAGES:
        return "image", INLINE_IMAGES[ext]
    if ext == ".pdf":
        return "pdf", "application/pdf"
    if ext in TABLES:
        return "table", TABLES[ext]
    if lower in NAMED_LANGUAGES:
        return "text", NAMED_LANGUAGES[lower]
    if ext in LANGUAGES:
        return "text", LANGUAGES[ext]
    guessed, _ = mimetypes.guess_type(lower)
    if guessed and guessed.startswith("text/"):
        return "text", "plaintext"
    if guessed or ext in (".gz", ".zip", ".tar", ".sif", ".h5", ".nc", ".npy", ".bin"):
        return "download", None
    return "unknown", None


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def decode_prefix(data: bytes) -> str:
    """UTF-8 text of ``data``, dropping a character cut in half at the end."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


def parse_table(
    text: str, delimiter: str, max_rows: int, cut: bool
) -> tuple[list[list[str]], bool]:
    """Rows of a CSV/TSV text; the last row is dropped when the text was cut there.
    Raises ``csv.Error`` for text that is not CSV (the preview then shows it as text)."""
    rows: list[list[str]] = []
    truncated = cut
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if len(rows) > max_rows:
            truncated = True
            break
        rows.append([cell[:1000] for cell in row[:200]])
    if cut and rows:
        rows.pop()
    return rows, truncated


# --- HTTP helpers that belong with the files ------------------------------------------

#: Sent with every file answer: no sniffing, and nothing the file contains may run.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}
#: PDF viewers do not run in a sandboxed document; scripts and everything else stay off.
PDF_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'; form-action 'none'",
}


def content_disposition(name: str, inline: bool) -> str:
    kind = "inline" if inline else "attachment"
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name) or "download"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def parse_range(header: str | None) -> dict[str, int | None] | None:
    """One ``bytes=`` range as ``{"start", "end"}`` (``-N``: start None, end N), or None
    to send the whole file (no header, several ranges, or a malformed one: RFC 9110
    lets a server ignore those)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or not (match.group(1) or match.group(2)):
        return None
    start = int(match.group(1)) if match.group(1) else None
    end = int(match.group(2)) if match.group(2) else None
    if start is not None and end is not None and end < start:
        return None
    return {"start": start, "end": end}


def parse_etags(header: str | None) -> list[str] | str | None:
    """``If-Match``: ``*`` or the strong entity tags listed (weak ones never match)."""
    if header is None:
        return None
    if header.strip() == "*":
        return "*"
    tags = [t.strip() for t in header.split(",")]
    return [t.strip('"') for t in tags if t.startswith('"') and t.endswith('"') and len(t) >= 2]


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


# --- the service ----------------------------------------------------------------------


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


class FileService:
    """File operations for one user; every call is one run of the helper as them."""

    def __init__(self, settings: Settings, runas: RunAs, who: Principal) -> None:
        self.settings = settings
        self.runas = runas
        self.who = who

    # plumbing

    def _request(self, op: str, root: Root, path: str, **fields: Any) -> dict[str, Any]:
        return {
            "op": op,
            "root": root.path,
            "path": path,
            "umask": self.settings.file_umask,
            **fields,
        }

    def _call(self, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        return self.runas.call(self.who.username, request, timeout=timeout)

    def root(self, name: str) -> Root:
        return root_named(self.settings, self.who, name)

    def _root_name(self, path: str) -> str | None:
        for root in roots_of(self.settings, self.who):
            if root.path == path:
                return root.name
        return None

    # reads

    def roots(self) -> list[RootInfo]:
        """The file areas that exist for this user (looked at as the user)."""
        candidates = roots_of(self.settings, self.who)
        answer = self._call({"op": "roots", "roots": [r.path for r in candidates]})
        found = {str(r.get("root")): r for r in answer.get("roots", []) if isinstance(r, dict)}
        listed = []
        for root in candidates:
            state = found.get(root.path, {})
            if state.get("exists"):
                listed.append(
                    RootInfo(
                        name=root.name,
                        path=root.path,
                        accessible=bool(state.get("accessible")),
                        writable=state.get("writable"),
                    )
                )
        return listed

    def info(
        self,
        root_name: str,
        path: str,
        *,
        offset: int = 0,
        limit: int = 200,
        sort: Sort = "name",
        hidden: bool = False,
    ) -> FileInfo | Listing:
        """A folder (with one page of entries) or a file's description."""
        root = self.root(root_name)
        path = clean_path(path)
        limit = min(limit, self.settings.file_list_max_limit)
        answer = self._call(
            self._request("list", root, path, offset=offset, limit=limit, sort=sort, hidden=hidden)
        )
        base = {**answer, "root": root.name, "path": path}
        if answer.get("type") == "directory" and "entries" in answer:
            entries = [
                Entry(**{**e, "path": _join(path, str(e.get("name")))})
                for e in answer["entries"]
                if isinstance(e, dict)
            ]
            return Listing(**{**base, "entries": entries})
        mime = mimetypes.guess_type(str(answer.get("name", "")))[0]
        return FileInfo(**{**base, "mime": mime if answer.get("type") == "file" else None})

    def read_head(self, root_name: str, path: str, cap: int) -> tuple[dict[str, Any], bytes]:
        """The file's description and its first ``cap`` bytes (for previews)."""
        root = self.root(root_name)
        return self.runas.read(
            self.who.username, self._request("read", root, clean_path(path), max_length=cap)
        )

    def preview(
        self, root_name: str, path: str, kind: PreviewKind, hint: str | None
    ) -> TextPreview | TablePreview | None:
        """Text or table preview, size-capped; None when the file is binary after all."""
        cap = self.settings.file_preview_max_bytes
        head, data = self.read_head(root_name, path, cap + 1)
        if looks_binary(data):
            return None
        cut = len(data) > cap or int(head["size"]) > cap
        text = decode_prefix(data[:cap])
        common = {
            "root": root_name,
            "path": clean_path(path),
            "size": int(head["size"]),
            "etag": str(head["etag"]),
        }
        if kind == "table" and hint:
            try:
                rows, truncated = parse_table(text, hint, self.settings.file_preview_max_rows, cut)
            except csv.Error:
                return TextPreview(**common, language="plaintext", content=text, truncated=cut)
            columns = rows[0] if rows else []
            return TablePreview(
                **common, delimiter=hint, columns=columns, rows=rows[1:], truncated=truncated
            )
        return TextPreview(**common, language=hint or "plaintext", content=text, truncated=cut)

    def trash(self) -> list[TrashItem]:
        roots = roots_of(self.settings, self.who)
        answer = self._call({"op": "trash", "roots": [r.path for r in roots]})
        items = []
        for meta in answer.get("items", []):
            if not isinstance(meta, dict):
                continue
            try:
                items.append(
                    TrashItem(
                        id=str(meta["id"]),
                        root=self._root_name(str(meta.get("root"))),
                        root_path=str(meta.get("root")),
                        path=str(meta.get("path")),
                        name=str(meta.get("name")),
                        type=meta.get("type", "other"),
                        size=int(meta.get("size") or 0),
                        deleted_at=datetime.fromtimestamp(float(meta["deleted_at"]), UTC),
                    )
                )
            except (KeyError, ValueError, TypeError):
                continue  # damaged metadata: the item stays in the trash folder
        return items

    def usage(
        self, root_name: str | None, path: str | None, *, refresh: bool = False
    ) -> UsageReport:
        roots = roots_of(self.settings, self.who)
        answer = self._call(
            {"op": "roots", "roots": [r.path for r in roots], "space": True, "quota": True}
        )
        quota = answer.get("quota") or {}
        quota_entries = [q for q in quota.get("entries", []) if isinstance(q, dict)]
        report_roots = []
        by_path = {str(r.get("root")): r for r in answer.get("roots", []) if isinstance(r, dict)}
        for root in roots:
            state = by_path.get(root.path, {})
            if not state.get("exists"):
                continue
            space = Space(**state) if "total" in state else None
            device = state.get("device")
            match = next((Quota(**q) for q in quota_entries if q.get("filesystem") == device), None)
            report_roots.append(
                RootUsage(
                    name=root.name,
                    path=root.path,
                    space=space,
                    quota=match,
                    error=state.get("error"),
                )
            )
        report = UsageReport(
            roots=report_roots,
            quota_known=bool(quota.get("known")),
            quota_note=quota.get("reason") or (None if quota_entries else "no quota set"),
        )
        if root_name is not None:
            report.folder = self.folder_sizes(root_name, path or "", refresh=refresh)
        return report

    def folder_sizes(self, root_name: str, path: str, *, refresh: bool = False) -> FolderUsage:
        """The sizes of a folder's entries, bounded in time, reused for a while."""
        root = self.root(root_name)
        clean = clean_path(path)
        key = (self.who.username, root.path, clean)
        cached = None if refresh else FOLDER_SIZES.get(key, self.settings.file_usage_cache_seconds)
        if cached is not None:
            return cached
        sizes = self._call(
            self._request("usage", root, clean, seconds=self.settings.file_usage_seconds),
            timeout=self.settings.file_usage_seconds + 60,
        )
        folder = FolderUsage(
            root=root.name,
            path=clean,
            complete=bool(sizes.get("complete")),
            entries=[FolderSize(**e) for e in sizes.get("entries", []) if isinstance(e, dict)],
            computed_at=datetime.now(UTC),
        )
        FOLDER_SIZES.put(key, folder)
        return folder

    # changes

    def write(
        self,
        root_name: str,
        path: str,
        data: bytes,
        *,
        if_match: list[str] | str | None,
        create_only: bool,
    ) -> WriteResult:
        root = self.root(root_name)
        clean = clean_path(path)
        if not clean:
            raise InvalidInput("Name a file to write.")
        request = self._request(
            "write", root, clean, size=len(data), if_match=if_match, if_none_match=create_only
        )
        answer = self.runas.call(self.who.username, request, payload=data, timeout=120)
        return WriteResult(
            root=root.name,
            path=clean,
            size=int(answer["size"]),
            sha256=str(answer["sha256"]),
            etag=str(answer["etag"]),
            created=bool(answer.get("created")),
        )

    def operate(self, root_name: str, path: str, body: FileOp) -> OpResult:
        root = self.root(root_name)
        clean = clean_path(path)
        if body.op == "mkdir":
            if not clean:
                raise InvalidInput("Name the folder to create.")
            self._call(self._request("mkdir", root, clean, parents=body.parents))
            return OpResult(op="mkdir", root=root.name, path=clean)
        if body.op == "chmod":
            mode = parse_mode(body.mode)
            answer = self._call(self._request("chmod", root, clean, mode=mode))
            return OpResult(op="chmod", root=root.name, path=clean, mode=int(answer["mode"]))
        if body.op == "restore":
            answer = self._call(
                self._request(
                    "restore",
                    root,
                    clean,
                    trash_id=body.trash_id,
                    roots=[r.path for r in roots_of(self.settings, self.who)],
                )
            )
            restored_root = self._root_name(str(answer.get("root"))) or str(answer.get("root"))
            return OpResult(
                op="restore",
                root=restored_root,
                path=str(answer.get("path")),
                trash_id=str(answer.get("trash_id")),
            )
        if body.to is None:
            raise InvalidInput(f"'{body.op}' needs 'to': the new path.")
        to_root = self.root(body.to_root) if body.to_root else root
        to = clean_path(body.to)
        if not clean or not to:
            raise InvalidInput("Neither the source nor the destination may be a file area itself.")
        op = "copy" if body.op == "copy" else "rename"
        timeout = self.settings.file_copy_timeout if op == "copy" else 120.0
        answer = self._call(
            self._request(op, root, clean, to_root=to_root.path, to=to), timeout=timeout
        )
        result = OpResult(op=body.op, root=root.name, path=clean, to_root=to_root.name, to=to)
        if op == "copy":
            result.files, result.dirs = int(answer["files"]), int(answer["dirs"])
            result.bytes, result.skipped = int(answer["bytes"]), list(answer.get("skipped", []))
        return result

    def delete(self, root_name: str, path: str, *, permanent: bool) -> OpResult:
        root = self.root(root_name)
        clean = clean_path(path)
        if not clean:
            raise Conflict("A file area itself cannot be deleted.")
        answer = self._call(
            self._request("delete", root, clean, permanent=permanent, label=root.name),
            timeout=self.settings.file_copy_timeout,
        )
        return OpResult(
            op="delete",
            root=root.name,
            path=clean,
            permanent=permanent,
            trash_id=answer.get("trash_id"),
        )

    # streams

    async def open_read(
        self,
        root_name: str,
        path: str,
        *,
        byte_range: dict[str, int | None] | None,
        if_range: str | None,
    ) -> tuple[HelperStream, dict[str, Any]]:
        """Start a streamed read: (stream, header). The caller must close the stream."""
        root = self.root(root_name)
        request = self._request("read", root, clean_path(path), range=byte_range, if_range=if_range)
        return await self._open(request)

    async def open_zip(self, root_name: str, path: str) -> tuple[HelperStream, dict[str, Any]]:
        root = self.root(root_name)
        return await self._open(self._request("zip", root, clean_path(path)))

    async def open_search(
        self, root_name: str, path: str, *, glob: str, content: str | None, hidden: bool
    ) -> tuple[HelperStream, dict[str, Any]]:
        if len(glob) > 255 or "\0" in glob or (content is not None and len(content) > 1000):
            raise InvalidInput("The search pattern is too long or contains a NUL byte.")
        root = self.root(root_name)
        request = self._request(
            "search",
            root,
            clean_path(path),
            glob=glob,
            content=content,
            hidden=hidden,
            seconds=self.settings.file_search_seconds,
            max_results=self.settings.file_search_max_results,
            content_max_bytes=self.settings.file_search_content_max_bytes,
        )
        return await self._open(request)

    async def _open(self, request: dict[str, Any]) -> tuple[HelperStream, dict[str, Any]]:
        stream = await self.runas.open_stream(self.who.username, request)
        try:
            await stream.end_input()
            header = await stream.answer()
        except BaseException:
            await stream.aclose()
            raise
        return stream, header


async def search_lines(stream: HelperStream, root_name: str) -> AsyncIterator[bytes]:
    """The helper's JSON lines, re-encoded one by one (malformed ones dropped)."""
    async for line in stream.lines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            if "path" in item:
                item["root"] = root_name
            yield (json.dumps(item, ensure_ascii=False) + "\n").encode()
