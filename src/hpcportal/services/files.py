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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.errors import Conflict, InvalidInput, NotFound
from hpcportal.limits import Line
from hpcportal.runas import HelperStream, RunAs
from hpcportal.runas.client import AsUser, ReadHead
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
        self.helper = AsUser(runas, who.username, umask=settings.file_umask)

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
        found = {r.root: r for r in self.helper.roots(r.path for r in candidates).roots}
        listed = []
        for root in candidates:
            state = found.get(root.path)
            if state is not None and state.exists:
                listed.append(
                    RootInfo(
                        name=root.name,
                        path=root.path,
                        accessible=state.accessible,
                        writable=state.writable,
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
        listed = self.helper.listing(
            root.path, path, offset=offset, limit=limit, sort=sort, hidden=hidden
        )
        base = {**asdict(listed.item), "root": root.name, "path": path}
        if listed.entries is not None:
            entries = [Entry(**{**asdict(e), "path": _join(path, e.name)}) for e in listed.entries]
            return Listing(
                **base,
                entries=entries,
                total=listed.total,
                offset=listed.offset,
                limit=listed.limit,
                sort=listed.sort,
            )
        mime = mimetypes.guess_type(listed.item.name)[0]
        return FileInfo(**base, mime=mime if listed.item.type == "file" else None)

    def read_head(self, root_name: str, path: str, cap: int) -> tuple[ReadHead, bytes]:
        """The file's description and its first ``cap`` bytes (for previews)."""
        return self.helper.read_head(self.root(root_name).path, clean_path(path), cap)

    def preview(
        self, root_name: str, path: str, kind: PreviewKind, hint: str | None
    ) -> TextPreview | TablePreview | None:
        """Text or table preview, size-capped; None when the file is binary after all."""
        cap = self.settings.file_preview_max_bytes
        head, data = self.read_head(root_name, path, cap + 1)
        if looks_binary(data):
            return None
        cut = len(data) > cap or head.size > cap
        text = decode_prefix(data[:cap])
        common = {
            "root": root_name,
            "path": clean_path(path),
            "size": head.size,
            "etag": head.etag,
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
        items = []
        for item in self.helper.trash(r.path for r in roots):
            try:
                items.append(
                    TrashItem(
                        id=item.id,
                        root=self._root_name(item.root),
                        root_path=item.root,
                        path=item.path,
                        name=item.name,
                        type=item.type,  # validated by pydantic
                        size=item.size,
                        deleted_at=datetime.fromtimestamp(item.deleted_at, UTC),
                    )
                )
            except (ValueError, TypeError):
                continue  # damaged metadata: the item stays in the trash folder
        return items

    def usage(
        self, root_name: str | None, path: str | None, *, refresh: bool = False
    ) -> UsageReport:
        roots = roots_of(self.settings, self.who)
        answer = self.helper.roots((r.path for r in roots), space=True)
        report_roots = []
        by_path = {r.root: r for r in answer.roots}
        for root in roots:
            state = by_path.get(root.path)
            if state is None or not state.exists:
                continue
            space = None
            if state.total is not None:
                space = Space(
                    total=state.total,
                    used=state.used or 0,
                    available=state.available or 0,
                    percent=state.percent or 0.0,
                )
            match = next(
                (Quota(**asdict(q)) for q in answer.quota if q.filesystem == state.device), None
            )
            report_roots.append(
                RootUsage(
                    name=root.name,
                    path=root.path,
                    space=space,
                    quota=match,
                    error=state.error,
                )
            )
        report = UsageReport(
            roots=report_roots,
            quota_known=answer.quota_known,
            quota_note=answer.quota_reason or (None if answer.quota else "no quota set"),
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
        sizes = self.helper.sizes(root.path, clean, seconds=self.settings.file_usage_seconds)
        folder = FolderUsage(
            root=root.name,
            path=clean,
            complete=sizes.complete,
            entries=[FolderSize(**asdict(e)) for e in sizes.entries],
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
        done = self.helper.write(root.path, clean, data, if_match=if_match, create_only=create_only)
        return WriteResult(
            root=root.name,
            path=clean,
            size=done.size,
            sha256=done.sha256,
            etag=done.etag,
            created=done.created,
        )

    def operate(self, root_name: str, path: str, body: FileOp) -> OpResult:
        root = self.root(root_name)
        clean = clean_path(path)
        if body.op == "mkdir":
            if not clean:
                raise InvalidInput("Name the folder to create.")
            self.helper.mkdir(root.path, clean, parents=body.parents)
            return OpResult(op="mkdir", root=root.name, path=clean)
        if body.op == "chmod":
            mode = self.helper.chmod(root.path, clean, parse_mode(body.mode))
            return OpResult(op="chmod", root=root.name, path=clean, mode=mode)
        if body.op == "restore":
            roots = [r.path for r in roots_of(self.settings, self.who)]
            placed = self.helper.restore(root.path, clean, body.trash_id, roots)
            return OpResult(
                op="restore",
                root=self._root_name(placed.root) or placed.root,
                path=placed.path,
                trash_id=placed.trash_id,
            )
        if body.to is None:
            raise InvalidInput(f"'{body.op}' needs 'to': the new path.")
        to_root = self.root(body.to_root) if body.to_root else root
        to = clean_path(body.to)
        if not clean or not to:
            raise InvalidInput("Neither the source nor the destination may be a file area itself.")
        result = OpResult(op=body.op, root=root.name, path=clean, to_root=to_root.name, to=to)
        if body.op != "copy":
            self.helper.rename(root.path, clean, to_root.path, to)
            return result
        copied = self.helper.copy(
            root.path, clean, to_root.path, to, timeout=self.settings.file_copy_timeout
        )
        result.files, result.dirs = copied.files, copied.dirs
        result.bytes, result.skipped = copied.bytes, copied.skipped
        return result

    def delete(self, root_name: str, path: str, *, permanent: bool) -> OpResult:
        root = self.root(root_name)
        clean = clean_path(path)
        if not clean:
            raise Conflict("A file area itself cannot be deleted.")
        placed = self.helper.delete(
            root.path,
            clean,
            permanent=permanent,
            label=root.name,
            timeout=self.settings.file_copy_timeout,
        )
        return OpResult(
            op="delete",
            root=root.name,
            path=clean,
            permanent=permanent,
            trash_id=placed.trash_id,
        )

    # streams

    async def open_read(
        self,
        root_name: str,
        path: str,
        *,
        byte_range: dict[str, int | None] | None,
        if_range: str | None,
    ) -> tuple[HelperStream, ReadHead]:
        """Start a streamed read: (stream, header). The caller must close the stream."""
        root = self.root(root_name)
        return await self.helper.open_read(
            root.path, clean_path(path), byte_range=byte_range, if_range=if_range
        )

    async def open_zip(self, root_name: str, path: str) -> tuple[HelperStream, str]:
        """A folder as a streamed zip: (stream, the folder's name)."""
        return await self.helper.open_zip(self.root(root_name).path, clean_path(path))

    async def open_search(
        self, root_name: str, path: str, *, glob: str, content: str | None, hidden: bool
    ) -> HelperStream:
        if len(glob) > 255 or "\0" in glob or (content is not None and len(content) > 1000):
            raise InvalidInput("The search pattern is too long or contains a NUL byte.")
        return await self.helper.open_search(
            self.root(root_name).path,
            clean_path(path),
            glob=glob,
            content=content,
            hidden=hidden,
            seconds=self.settings.file_search_seconds,
            max_results=self.settings.file_search_max_results,
            content_max_bytes=self.settings.file_search_content_max_bytes,
        )


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
