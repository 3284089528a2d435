"""``FileService``: the file operations of one user, each one run of the helper as them.

It turns a file area's name and a path into a root and a clean root-relative path
(``paths``), calls the typed helper client (``AsUser``) and validates what the helper
answers, the user's own data, into the models of ``models``, trusting it for nothing
else. Folder sizes are cached briefly (walking a tree costs the user's disk time).
"""

from __future__ import annotations

import csv
import json
import mimetypes
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime

from hpcportal.config import Settings
from hpcportal.errors import Conflict, InvalidInput
from hpcportal.runas import HelperStream, RunAs
from hpcportal.runas.client import AsUser
from hpcportal.runas.results import ReadHead
from hpcportal.services.files.models import (
    Entry,
    FileInfo,
    FileOp,
    FolderSize,
    FolderUsage,
    Listing,
    OpResult,
    Quota,
    RootInfo,
    RootUsage,
    Sort,
    Space,
    TablePreview,
    TextPreview,
    TrashItem,
    UsageReport,
    WriteResult,
    parse_mode,
)
from hpcportal.services.files.paths import Root, clean_path, root_named, roots_of
from hpcportal.services.files.preview import PreviewKind, decode_prefix, looks_binary, parse_table
from hpcportal.services.identity import Principal


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
