"""The helper's reads: a path described (``list``, also a folder's page of entries)
and a file's bytes streamed (``read``, a range or from an offset). Part of the
helper program (standard library only; see ``helper_walk``)."""

from __future__ import annotations

import errno
import grp
import hashlib
import heapq
import os
import pwd
import stat
from typing import Any

from hpcportal.runas.helper_walk import (
    CHUNK,
    O_DIR,
    O_READ,
    Refused,
    Stream,
    Target,
    answer,
    begin,
    display,
)

SORT_KEYS = frozenset({"name", "size", "mtime"})


# --- describing files ---------------------------------------------------------------

_OWNERS: dict[int, str] = {}
_GROUPS: dict[int, str] = {}


def owner(uid: int) -> str:
    if uid not in _OWNERS:
        try:
            _OWNERS[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _OWNERS[uid] = str(uid)
    return _OWNERS[uid]


def group(gid: int) -> str:
    if gid not in _GROUPS:
        try:
            _GROUPS[gid] = grp.getgrgid(gid).gr_name
        except KeyError:
            _GROUPS[gid] = str(gid)
    return _GROUPS[gid]


def kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def etag(info: os.stat_result) -> str:
    """Changes whenever the file is replaced or written (inode, size, mtime in ns)."""
    key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def describe(name: str, info: os.stat_result) -> dict[str, Any]:
    return {
        "name": display(name),
        "type": kind(info.st_mode),
        "size": info.st_size,
        "mtime": info.st_mtime,
        "mode": stat.S_IMODE(info.st_mode),
        "permissions": stat.filemode(info.st_mode),
        "owner": owner(info.st_uid),
        "group": group(info.st_gid),
    }


def access(fd: int, mode: int) -> bool | None:
    """May this user read/write the opened file? (The kernel's answer, via /proc.)"""
    try:
        return os.access(f"/proc/self/fd/{fd}", mode)
    except OSError:
        return None


def current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


# --- list and stat ------------------------------------------------------------------


def op_list(request: dict[str, Any]) -> None:
    """The path's description; for a directory also one page of its entries.

    Sorting by name reads only the names and types ``getdents`` gives (no stat per
    entry); only the page is stat-ed. Sorting by size or time stats every entry.
    """
    sort = str(request.get("sort", "name"))
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    if key not in SORT_KEYS:
        raise Refused(f"cannot sort by {sort!r}")
    offset = max(0, int(request.get("offset", 0)))
    limit = min(10_000, max(1, int(request.get("limit", 200))))
    with Target(request.get("root"), request.get("path", "")) as target:
        fd = target.open(os.O_PATH)
        name = target.name or os.path.basename(target.root.rstrip("/")) or "/"
    try:
        info = os.fstat(fd)
        result = {"ok": True, "path": target.relative, **describe(name, info), "etag": etag(info)}
        result["readable"] = access(fd, os.R_OK)
        result["writable"] = access(fd, os.W_OK)
        if stat.S_ISDIR(info.st_mode) and request.get("entries", True):
            dfd = os.open(".", O_DIR, dir_fd=fd)
            try:
                page = list_directory(dfd, key, reverse, offset, limit, bool(request.get("hidden")))
            finally:
                os.close(dfd)
            result.update(page, sort=sort, offset=offset, limit=limit)
    finally:
        os.close(fd)
    answer(result)


def _files_then_name(entry: os.DirEntry[str]) -> tuple[bool, str, str]:
    return (not entry.is_dir(follow_symlinks=False), entry.name.casefold(), entry.name)


def _folder_then_name(entry: os.DirEntry[str]) -> tuple[bool, str, str]:
    return (entry.is_dir(follow_symlinks=False), entry.name.casefold(), entry.name)


def list_directory(
    dfd: int, key: str, reverse: bool, offset: int, limit: int, hidden: bool
) -> dict[str, Any]:
    with os.scandir(dfd) as it:
        entries = [e for e in it if hidden or not e.name.startswith(".")]
    rows: list[tuple[os.DirEntry[str], os.stat_result]] = []
    if key == "name":
        # Folders first, then by name; only the first offset + limit entries are put
        # in order (a heap), not the whole folder: much less work for a huge folder.
        wanted = offset + limit
        if reverse:
            ordered = heapq.nlargest(wanted, entries, key=_folder_then_name)
        else:
            ordered = heapq.nsmallest(wanted, entries, key=_files_then_name)
        for entry in ordered[offset:]:
            try:
                rows.append((entry, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed meanwhile
    else:
        for entry in entries:
            try:
                rows.append((entry, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
        field = "st_size" if key == "size" else "st_mtime"
        rows.sort(key=lambda r: (getattr(r[1], field), r[0].name), reverse=reverse)
        rows.sort(key=lambda r: not stat.S_ISDIR(r[1].st_mode))  # folders first
        rows = rows[offset : offset + limit]
    items = []
    for entry, info in rows:
        item = describe(entry.name, info)
        if stat.S_ISLNK(info.st_mode):
            try:
                item["target"] = display(os.readlink(entry.name, dir_fd=dfd))
            except OSError:
                item["target"] = None
        items.append(item)
    return {"total": len(entries), "entries": items}


# --- reading ------------------------------------------------------------------------


def resolve_range(wanted: Any, size: int) -> tuple[int, int] | None:
    """(offset, length) of ``{"start": a, "end": b}`` (either may be None: ``-n`` is
    ``{"end": n}`` with no start), or None if it does not fit the file."""
    if not isinstance(wanted, dict):
        raise Refused("malformed range")
    start, end = wanted.get("start"), wanted.get("end")
    if start is None:
        suffix = int(end or 0)
        if suffix <= 0 or size == 0:
            return None
        first = max(0, size - suffix)
        return first, size - first
    first = int(start)
    last = size - 1 if end is None else min(int(end), size - 1)
    if first < 0 or first >= size or last < first:
        return None
    return first, last - first + 1


def send_file(fd: int, offset: int, length: int) -> None:
    """Copy a byte range of ``fd`` to stdout (sendfile, else read and write)."""
    remaining = length
    try:
        while remaining > 0:
            sent = os.sendfile(1, fd, offset, min(remaining, 8 * CHUNK))
            if sent == 0:
                return  # the file shrank; the portal sees the short stream
            offset += sent
            remaining -= sent
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while remaining > 0:
        data = os.pread(fd, min(remaining, CHUNK), offset)
        if not data:
            return
        Stream.write(data)
        offset += len(data)
        remaining -= len(data)


def op_read(request: dict[str, Any]) -> None:
    """A JSON line (size, range, etag), then the bytes of the range, streamed."""
    with Target(request.get("root"), request.get("path", "")) as target:
        fd = target.open(O_READ)
        name = target.name or ""
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "Is a directory", target.label)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"the path {target.label} is not a regular file", "not_regular")
        head = {**describe(name, info), "ok": True, "etag": etag(info), "partial": False}
        offset, length = 0, info.st_size
        wanted = request.get("range")
        if wanted is not None and request.get("if_range") in (None, head["etag"]):
            fits = resolve_range(wanted, info.st_size)
            if fits is None:
                answer({**head, "satisfiable": False})
                return
            offset, length = fits
            head["partial"] = True
        elif request.get("offset") is not None:  # from an offset to the end (job output)
            offset = min(max(0, int(request["offset"])), info.st_size)
            length = info.st_size - offset
        if request.get("max_length") is not None:
            length = min(length, max(0, int(request["max_length"])))
        begin({**head, "satisfiable": True, "offset": offset, "length": length})
        send_file(fd, offset, length)
    finally:
        os.close(fd)
