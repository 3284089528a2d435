"""Typed operations of the run-as helper: the only place that speaks its wire format.

Services and routers call these methods and get dataclasses back; none of them builds
a helper request (``{"op": ...}``) or reads a key of the helper's answer. So the
helper's protocol can change in one module, and what the portal asks of the helper
can be read here in one sitting. What the operations return is in ``results.py``.

:class:`AsUser` acts for one user. File operations name a *root* (an absolute folder
the portal derives from its settings) and a path relative to it, the one path
protocol of the helper: it has no operation on an absolute path. The portal's own per-user folders
(``session_root``, ``submission_root``, ``upload_root``) are roots like the file
areas; a job's output file, which Slurm may have put anywhere, is read with its
folder as the root (``read_output``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from hpcportal.errors import NotFound
from hpcportal.runas.boundary import RunAs
from hpcportal.runas.results import (
    Copied,
    Described,
    EntrySize,
    Listed,
    PathStat,
    Placed,
    QuotaEntry,
    Range,
    ReadHead,
    RootsReport,
    RootState,
    Sizes,
    TerminalStarted,
    TrashEntry,
    UploadStep,
    UploadTarget,
    Written,
    pick,
)
from hpcportal.runas.stream import HelperStream


class AsUser:
    """The helper's operations for one user; each is one run of the helper as them.

    ``umask`` applies to what file operations create (the site's ``file_umask``).
    """

    def __init__(self, runas: RunAs, username: str, *, umask: int | None = None) -> None:
        self.runas = runas
        self.username = username
        self.umask = umask

    # --- plumbing ----------------------------------------------------------------------

    def _in(self, op: str, root: str, path: str, **extra: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"op": op, "root": root, "path": path, **extra}
        if self.umask is not None:
            request["umask"] = self.umask
        return request

    def _call(
        self, request: dict[str, Any], *, payload: bytes | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        return self.runas.call(self.username, request, payload=payload, timeout=timeout)

    async def _open(self, request: dict[str, Any]) -> tuple[HelperStream, dict[str, Any]]:
        """A streamed answer: the stream (the caller closes it) and its header."""
        stream = await self.runas.open_stream(self.username, request)
        try:
            await stream.end_input()
            header = await stream.answer()
        except BaseException:
            await stream.aclose()
            raise
        return stream, header

    # --- the portal's own folders (sessions, job scripts, uploads) and job output -------

    def stat(self, root: str, path: str) -> PathStat:
        """A path's description; ``exists`` False when there is none."""
        try:
            answer = self._call(self._in("list", root, path, entries=False))
        except NotFound:
            return PathStat(path, exists=False)
        return pick(PathStat, {**answer, "exists": True})

    def make_folder(self, root: str, path: str, *, mode: int = 0o700, room_for: int = 0) -> None:
        """Create a folder and any missing on the way (``root`` too: it is one of the
        portal's per-user areas, such as ``session_root``); with ``room_for``, first
        refuse if that many bytes do not fit there for the user (space and quota)."""
        room = {"room_for": room_for} if room_for > 0 else {}

        def request(root: str, path: str) -> dict[str, Any]:
            return self._in("mkdir", root, path, mode=mode, parents=True, **room)

        self._in_area(root, path, request)

    def write_file(
        self,
        root: str,
        path: str,
        data: bytes,
        *,
        mode: int = 0o600,
        replace: bool = False,
        parents: bool = False,
    ) -> Written:
        """Write ``data`` atomically with the bits ``mode``; an existing file is replaced
        only with ``replace``. With ``parents`` missing folders (``root`` too) are made."""

        def request(root: str, path: str) -> dict[str, Any]:
            return self._in(
                "write", root, path, size=len(data), mode=mode, replace=replace, parents=parents
            )

        if not parents:
            return pick(Written, self._call(request(root, path), payload=data, timeout=120))
        return pick(Written, self._in_area(root, path, request, payload=data))

    def read_range(self, root: str, path: str, *, offset: int, length: int) -> tuple[Range, bytes]:
        """At most ``length`` bytes at ``offset`` of a regular file."""
        request = self._in("read", root, path, offset=offset, max_length=length)
        head, data = self.runas.read(self.username, request)
        return Range(int(head["size"]), offset, len(data)), data

    def read_output(self, path: str, *, offset: int, length: int) -> tuple[Range, bytes]:
        """At most ``length`` bytes at ``offset`` of a job's output file, which Slurm may
        have put anywhere: its folder is the root of the read."""
        head, data = self.runas.read_file(self.username, path, offset=offset, length=length)
        return Range(int(head["size"]), offset, len(data)), data

    async def open_framed_write(
        self, root: str, path: str, *, max_size: int, mode: int = 0o600
    ) -> HelperStream:
        """Start writing a file of unknown size as frames; the caller sends them, then
        reads the result with :func:`finish_write`."""
        request = self._in("write", root, path, framed=True, max_size=max_size, mode=mode)
        return await self.runas.open_stream(self.username, request)

    def _in_area(
        self,
        root: str,
        path: str,
        request: Callable[[str, str], dict[str, Any]],
        payload: bytes | None = None,
    ) -> dict[str, Any]:
        """``request`` (one that makes missing folders) at ``path`` in ``root``; when
        ``root`` itself is missing (a per-user area used for the first time), again
        from ``/``, so the area is made too (the walk from ``/`` follows links where
        the system has them, as an absolute path would)."""
        try:
            return self._call(request(root, path), payload=payload, timeout=120)
        except NotFound:
            whole = f"{root.strip('/')}/{path}"
            return self._call(request("/", whole), payload=payload, timeout=120)

    # --- inside a root -----------------------------------------------------------------

    def roots(self, roots: Iterable[str], *, space: bool = False) -> RootsReport:
        """Which roots exist for the user; with ``space`` their free space and quota."""
        request: dict[str, Any] = {"op": "roots", "roots": list(roots)}
        if space:
            request.update(space=True, quota=True)
        answer = self._call(request)
        states = [pick(RootState, r) for r in answer.get("roots", []) if isinstance(r, dict)]
        quota = answer.get("quota") or {}
        entries = [pick(QuotaEntry, q) for q in quota.get("entries", []) if isinstance(q, dict)]
        return RootsReport(
            roots=states,
            quota_known=bool(quota.get("known")),
            quota_reason=quota.get("reason"),
            quota=entries,
        )

    def listing(
        self, root: str, path: str, *, offset: int = 0, limit: int = 200, sort: str = "name",
        hidden: bool = False, entries: bool = True,
    ) -> Listed:  # fmt: skip
        """A path's description; for a folder (with ``entries``) one page of its entries."""
        answer = self._call(
            self._in("list", root, path, offset=offset, limit=limit, sort=sort, hidden=hidden,
                     entries=entries)
        )  # fmt: skip
        item = pick(Described, answer)
        if answer.get("type") != "directory" or "entries" not in answer:
            return Listed(item)
        page = [pick(Described, e) for e in answer["entries"] if isinstance(e, dict)]
        return Listed(
            item,
            page,
            total=int(answer.get("total", len(page))),
            offset=int(answer.get("offset", offset)),
            limit=int(answer.get("limit", limit)),
            sort=str(answer.get("sort", sort)),
        )

    def read_head(self, root: str, path: str, cap: int) -> tuple[ReadHead, bytes]:
        """A file's description and its first ``cap`` bytes (for previews)."""
        head, data = self.runas.read(self.username, self._in("read", root, path, max_length=cap))
        return pick(ReadHead, head), data

    def write(
        self, root: str, path: str, data: bytes, *, if_match: list[str] | str | None,
        create_only: bool,
    ) -> Written:  # fmt: skip
        """Replace (only if the file's etag is in ``if_match``) or create a file."""
        request = self._in(
            "write", root, path, size=len(data), if_match=if_match, if_none_match=create_only
        )
        return pick(Written, self._call(request, payload=data, timeout=120))

    def mkdir(self, root: str, path: str, *, parents: bool = False) -> None:
        self._call(self._in("mkdir", root, path, parents=parents))

    def chmod(self, root: str, path: str, mode: int) -> int:
        """Set permission bits; the bits the file has afterwards."""
        return int(self._call(self._in("chmod", root, path, mode=mode))["mode"])

    def rename(self, root: str, path: str, to_root: str, to: str) -> None:
        self._call(self._in("rename", root, path, to_root=to_root, to=to), timeout=120)

    def copy(self, root: str, path: str, to_root: str, to: str, *, timeout: float) -> Copied:
        answer = self._call(self._in("copy", root, path, to_root=to_root, to=to), timeout=timeout)
        return Copied(
            files=int(answer["files"]),
            dirs=int(answer["dirs"]),
            bytes=int(answer["bytes"]),
            skipped=[str(s) for s in answer.get("skipped", [])],
        )

    def delete(
        self, root: str, path: str, *, permanent: bool, label: str | None = None,
        timeout: float = 60.0,
    ) -> Placed:  # fmt: skip
        """To the trash (its id in the answer), or for good with ``permanent``."""
        request = self._in("delete", root, path, permanent=permanent, label=label)
        answer = self._call(request, timeout=timeout)
        return Placed(root, str(answer.get("path", path)), answer.get("trash_id"))

    def trash(self, roots: Iterable[str]) -> list[TrashEntry]:
        answer = self._call({"op": "trash", "roots": list(roots)})
        items = []
        for meta in answer.get("items", []):
            if not isinstance(meta, dict):
                continue
            try:
                items.append(
                    TrashEntry(
                        id=str(meta["id"]),
                        root=str(meta.get("root")),
                        path=str(meta.get("path")),
                        name=str(meta.get("name")),
                        type=str(meta.get("type", "other")),
                        size=int(meta.get("size") or 0),
                        deleted_at=float(meta["deleted_at"]),
                    )
                )
            except (KeyError, ValueError, TypeError):
                continue  # damaged metadata: the item stays in the trash folder
        return items

    def restore(self, root: str, path: str, trash_id: str | None, roots: Iterable[str]) -> Placed:
        """Put a trashed item back (at ``path`` in ``root``, or where it came from)."""
        answer = self._call(self._in("restore", root, path, trash_id=trash_id, roots=list(roots)))
        return Placed(str(answer.get("root")), str(answer.get("path")), answer.get("trash_id"))

    def sizes(self, root: str, path: str, *, seconds: float) -> Sizes:
        """The sizes of a folder's entries, measured for at most ``seconds``."""
        answer = self._call(self._in("usage", root, path, seconds=seconds), timeout=seconds + 60)
        entries = [pick(EntrySize, e) for e in answer.get("entries", []) if isinstance(e, dict)]
        return Sizes(bool(answer.get("complete")), entries)

    # --- streams (the caller closes the stream) ------------------------------------------

    async def open_read(
        self,
        root: str,
        path: str,
        *,
        byte_range: dict[str, int | None] | None,
        if_range: str | None,
    ) -> tuple[HelperStream, ReadHead]:
        stream, head = await self._open(
            self._in("read", root, path, range=byte_range, if_range=if_range)
        )
        return stream, pick(ReadHead, head)

    async def open_zip(self, root: str, path: str) -> tuple[HelperStream, str]:
        """A folder as a zip archive, streamed; the folder's name."""
        stream, head = await self._open(self._in("zip", root, path))
        return stream, str(head.get("name") or "")

    async def open_search(
        self, root: str, path: str, *, glob: str, content: str | None, hidden: bool,
        seconds: float, max_results: int, content_max_bytes: int,
    ) -> HelperStream:  # fmt: skip
        """Search results as JSON lines (read with ``stream.lines()``)."""
        request = self._in(
            "search", root, path, glob=glob, content=content, hidden=hidden, seconds=seconds,
            max_results=max_results, content_max_bytes=content_max_bytes,
        )  # fmt: skip
        stream, _ = await self._open(request)
        return stream

    # --- resumable uploads (tus) ---------------------------------------------------------

    def _upload(self, target: UploadTarget, action: str, **extra: Any) -> dict[str, Any]:
        return self._in(
            "upload", target.root, target.folder, action=action, name=target.name,
            upload_id=target.upload_id, **extra,
        )  # fmt: skip

    def upload_create(self, target: UploadTarget, *, length: int, reserved: int) -> None:
        """Make the hidden partial file, after checking there is room for ``length``
        bytes beside what the user's other unfinished uploads there still need."""
        self._call(self._upload(target, "create", length=length, reserved=reserved))

    def upload_append(
        self, target: UploadTarget, *, offset: int, length: int, data: bytes
    ) -> UploadStep:
        """Append ``data`` at ``offset`` to an upload of ``length`` bytes in all."""
        answer = self._call(
            self._upload(target, "append", offset=offset, length=length), payload=data
        )
        return upload_step(answer)

    def upload_abort(self, target: UploadTarget) -> None:
        self._call(self._upload(target, "abort"))

    async def open_upload_create(
        self, target: UploadTarget, *, length: int, reserved: int, expected: int | None,
        checksum: str | None,
    ) -> HelperStream:  # fmt: skip
        """Create and append the body in one helper run; the caller feeds the bytes."""
        request = self._upload(
            target, "create", length=length, reserved=reserved, append=True,
            expected=expected, checksum=checksum,
        )  # fmt: skip
        return await self.runas.open_stream(self.username, request)

    async def open_upload_append(
        self, target: UploadTarget, *, offset: int, length: int, expected: int | None,
        checksum: str | None,
    ) -> HelperStream:  # fmt: skip
        request = self._upload(
            target, "append", offset=offset, length=length, expected=expected, checksum=checksum
        )
        return await self.runas.open_stream(self.username, request)

    # --- terminal --------------------------------------------------------------------------

    async def open_terminal(
        self, *, rows: int, cols: int, cwd: str | None, timeout: float
    ) -> tuple[HelperStream, TerminalStarted]:
        """The user's login shell on a pseudo-terminal, started in ``cwd``."""
        request: dict[str, Any] = {"op": "terminal", "rows": rows, "cols": cols}
        if cwd:
            request["path"] = cwd
        stream = await self.runas.open_stream(self.username, request)
        try:
            answer = await stream.answer(timeout=timeout)
        except BaseException:
            await stream.aclose()
            raise
        started = TerminalStarted(
            int(answer.get("pid") or 0),
            str(answer.get("cwd") or cwd or ""),
            str(answer.get("shell") or ""),
        )
        return stream, started


#: How long a helper that has answered may take to exit before it is terminated.
EXIT_GRACE_SECONDS = 5.0


async def final_answer(stream: HelperStream, timeout: float) -> dict[str, Any]:
    """The helper's answer after its input ended, once the helper has exited by itself.

    Closing a helper that is still running sends it SIGTERM, and ``runuser`` (the
    portal running as root: the demo, the tests) answers a relayed SIGTERM by sleeping
    2 s before it exits. A helper that has answered is exiting anyway, so it is waited
    for (briefly) instead: that wait was most of a small upload's time (~2.4 s)."""
    try:
        return await stream.answer(timeout=timeout)
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.proc.wait(), EXIT_GRACE_SECONDS)


async def finish_write(stream: HelperStream, timeout: float) -> Written:
    """The result of a framed write (``open_framed_write``) once its input ended."""
    return pick(Written, await final_answer(stream, timeout))


async def finish_upload(stream: HelperStream, timeout: float) -> UploadStep:
    """The result of a streamed upload step once its input ended."""
    return upload_step(await final_answer(stream, timeout))


def upload_step(answer: dict[str, Any]) -> UploadStep:
    return UploadStep(int(answer.get("offset", 0)), bool(answer.get("complete")))
