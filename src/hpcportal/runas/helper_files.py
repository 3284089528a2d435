"""File operations of the run-as helper: inside a root, as the user, opened by descriptor.

Standard library only. The portal pastes this module's source into ``helper.py``
where it says so (``boundary.helper_source``), so the program that runs as the user
(from argv under runuser, or the copy ``hpcportal runas install`` writes) stays one
self-contained file. Tests import it directly.

Every operation names a **root** (an absolute directory the portal derives from its
settings, such as ``/home/alice``) and a **relative path** inside it. The root is
opened first; then each component is opened relative to the previous directory's
descriptor with ``O_NOFOLLOW`` (``Target``). A symbolic link met on the way is
expanded here, inside the root: a relative target continues from the link's own
directory (``..`` closes a directory we hold, it never opens one, and it cannot leave
the root) and an absolute target must name a place under the root, from which the
walk restarts. So every descriptor the walk holds was reached by names from the
root, and a file swapped for a symbolic link mid-operation makes the operation
fail instead of leading outside. ``..``, absolute paths and NUL bytes in the
relative part are refused outright.

The helper runs with the user's own UID, so whatever the walk reaches, the kernel
still decides what may be read or changed: these checks keep the portal's view
inside a root, they never add a permission.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import grp
import hashlib
import heapq
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

CHUNK = 1024 * 1024
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs us
O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40
MAX_DEPTH = 256
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
TRASH = ".hpcportal-trash"
TRASH_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
SORT_KEYS = frozenset({"name", "size", "mtime"})
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


class Refused(Exception):
    """A request the helper will not perform; ``kind`` tells the portal which error it is."""

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


class Stream:
    """Raw writes to stdout. Once a streaming answer has begun, an error can no longer
    be sent as a JSON line (it would corrupt the stream): it goes to stderr."""

    started = False

    @staticmethod
    def write(data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]


def answer(result: dict[str, Any]) -> None:
    Stream.write((json.dumps(result) + "\n").encode())


def begin(header: dict[str, Any]) -> None:
    """The JSON line that opens a streamed answer; raw bytes or JSON lines follow."""
    answer(header)
    Stream.started = True


# --- names and paths ----------------------------------------------------------------


def split_relative(path: Any) -> list[str]:
    """The components of a root-relative path; ``..``, absolute paths and NUL refused."""
    if not isinstance(path, str):
        raise Refused("the path must be a string")
    if "\0" in path:
        raise Refused("the path contains a NUL byte")
    if path.startswith("/"):
        raise Refused("the path must be relative to its root, not absolute")
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise Refused("the path is too long")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("'..' is not allowed in a path")
    if any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in parts):
        raise Refused("a name is longer than 255 bytes")
    return parts


def plain_name(name: Any) -> str:
    """A single file name: no '/', not '.' or '..', no NUL, at most 255 bytes."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise Refused("bad file name")
    if "/" in name or "\0" in name or len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise Refused(f"bad file name {name!r}")
    return name


def absolute_root(root: Any) -> str:
    if not isinstance(root, str) or not root.startswith("/") or "\0" in root:
        raise Refused("the root must be an absolute path")
    return root


def display(name: str) -> str:
    """A name as text: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def hidden_name(name: str, tag: str) -> str:
    """A hidden sibling name for work in progress: ``.NAME.TAG``, within 255 bytes."""
    stem = os.fsencode(name)[: MAX_NAME_BYTES - len(tag) - 3].decode("utf-8", "ignore")
    return f".{stem}.{tag}"


class Target:
    """A root-relative path, walked from the root's descriptor without following links out.

    ``dirs`` holds descriptors of the directories walked, the root's first; ``name``
    is the last component, or ``None`` when the path is a directory on the stack
    itself (the root, or a link's target ending in ``..``). ``create_dirs`` makes
    missing intermediate directories (``mkdir -p``).
    """

    def __init__(self, root: Any, path: Any, *, create_dirs: bool = False) -> None:
        self.root = absolute_root(root)
        parts = split_relative(path)
        self.relative = "/".join(parts)
        self.create_dirs = create_dirs
        self.links = 0
        self.name: str | None = None
        self.dirs = [os.open(self.root, O_DIR)]
        # Absolute link targets are matched against the root as configured and as resolved.
        self.prefixes = {self.root.rstrip("/") or "/", os.path.realpath(self.root)}
        try:
            self._walk(parts)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        while self.dirs:
            os.close(self.dirs.pop())

    @property
    def parent(self) -> int:
        """The directory that holds ``name`` (or that is the target when ``name`` is None)."""
        return self.dirs[-1]

    @property
    def label(self) -> str:
        return self.relative or "."

    def _walk(self, parts: list[str]) -> None:
        pending = list(parts)
        self.name = None
        while pending:
            part = pending.pop(0)
            if part == "..":  # only from a link's target
                if len(self.dirs) == 1:
                    raise self._outside()
                os.close(self.dirs.pop())
            elif not pending:
                self.name = part
            else:
                self._enter(part, pending)

    def _enter(self, part: str, pending: list[str]) -> None:
        flags = O_DIR | os.O_NOFOLLOW
        try:
            fd = os.open(part, flags, dir_fd=self.parent)
        except FileNotFoundError:
            if not self.create_dirs:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=self.parent)
            fd = os.open(part, flags, dir_fd=self.parent)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP) and self._is_link(part):
                pending[:0] = self._follow(part)
                return
            raise
        self.dirs.append(fd)

    def _is_link(self, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=self.parent, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def _outside(self) -> Refused:
        return Refused(
            f"the path {self.label} leads outside {self.root} through a symbolic link; "
            "links out of a root are not followed",
            "outside",
        )

    def _follow(self, name: str) -> list[str]:
        """The components the link ``name`` (in ``parent``) stands for, to walk from there."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), self.label)
        target = os.readlink(name, dir_fd=self.parent)
        if target.startswith("/"):
            for prefix in self.prefixes:
                if prefix == "/" or target == prefix or target.startswith(prefix + "/"):
                    target = target[len(prefix) :] if prefix != "/" else target
                    break
            else:
                raise self._outside()
            while len(self.dirs) > 1:
                os.close(self.dirs.pop())
        return [p for p in target.split("/") if p not in ("", ".")]

    def open(self, flags: int) -> int:
        """Open the target itself, expanding links inside the root (never one outside).

        With ``O_PATH`` a link would open as itself; it is expanded too, so the answer
        always describes what the path names.
        """
        while True:
            if self.name is None:
                return os.open(".", flags | os.O_CLOEXEC, dir_fd=self.parent)
            try:
                fd = os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and self._is_link(self.name):
                    self._walk(self._follow(self.name))
                    continue
                raise
            if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                self._walk(self._follow(self.name))
                continue
            return fd

    def resolve_final(self) -> bool:
        """Expand links at the last component in place; False if it does not exist."""
        try:
            fd = self.open(os.O_PATH)
        except FileNotFoundError:
            return False
        os.close(fd)
        return True

    def lstat(self) -> os.stat_result:
        """The last component itself, not followed."""
        if self.name is None:
            return os.fstat(self.parent)
        return os.stat(self.name, dir_fd=self.parent, follow_symlinks=False)

    def need_name(self, what: str) -> str:
        if self.name is None:
            raise Refused(f"cannot {what} the root of a file area itself")
        return self.name


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


# --- writing ------------------------------------------------------------------------


def copy_stdin(fd: int, offset: int, limit: int | None) -> tuple[int, str]:
    """Append the payload at ``offset`` until EOF: (bytes, SHA-256). More than ``limit``
    bytes is refused (and what was written is cut off again)."""
    digest = hashlib.sha256()
    source: Any = sys.stdin.buffer  # a BufferedReader: read1 returns what is there
    position = offset
    while chunk := source.read1(CHUNK):
        if limit is not None and position - offset + len(chunk) > limit:
            os.ftruncate(fd, offset)
            raise Refused("more bytes were sent than announced", "too_large")
        view = memoryview(chunk)
        while view:
            written = os.pwrite(fd, view, position)
            position += written
            view = view[written:]
        digest.update(chunk)
    return position - offset, digest.hexdigest()


def op_write(request: dict[str, Any]) -> None:
    """Replace or create a file atomically: hidden temporary file, fsync, then rename
    (replace, only if the current file's etag is in ``if_match``, or with ``replace``)
    or link (create: never replaces). The payload is exactly ``size`` bytes, or with
    ``framed`` frames of at most ``max_size`` bytes in all (``copy_frames``). ``mode``
    fixes the permission bits (else the umask's, or the replaced file's); ``parents``
    makes missing folders on the way."""
    framed = bool(request.get("framed"))
    size = int(request.get("size", -1))
    limit = int(request.get("max_size", -1))
    if (limit if framed else size) < 0:
        raise Refused("max_size is required" if framed else "size is required")
    replace = bool(request.get("replace"))
    if_match = "*" if replace else request.get("if_match")
    create_only = bool(request.get("if_none_match"))
    fixed = request.get("mode")
    parents = bool(request.get("parents"))
    with Target(request.get("root"), request.get("path"), create_dirs=parents) as target:
        target.need_name("write")
        exists = target.resolve_final()  # an edit through a link inside the root edits its target
        name = target.need_name("write")
        directory = target.parent
        mode = 0o666 & ~current_umask() if fixed is None else int(fixed) & 0o777
        if exists:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"the path {target.label} is not a regular file", "not_regular")
            check_precondition(info, if_match, create_only, target.label)
            mode = stat.S_IMODE(info.st_mode) if fixed is None else mode
        elif if_match is not None and not replace:
            raise Refused(f"the file {target.label} no longer exists", "precondition")
        temp = hidden_name(name, f"{secrets.token_hex(8)}.part")
        fd = os.open(temp, O_CREATE, 0o600, dir_fd=directory)
        try:
            size, digest = take_payload(fd, framed, size, limit, target.label)
            os.fchmod(fd, mode)
            os.fsync(fd)
            if exists:
                # Checked again just before the swap, to keep the window small.
                check_precondition(
                    os.stat(name, dir_fd=directory, follow_symlinks=False),
                    if_match,
                    create_only,
                    target.label,
                )
                os.rename(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
            else:
                os.link(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
                os.unlink(temp, dir_fd=directory)
            final = os.fstat(fd)
        except BaseException:
            os.close(fd)
            unlink_quietly(temp, directory)
            raise
        os.close(fd)
        os.fsync(directory)
    answer(
        {"ok": True, "path": target.relative, "size": size, "sha256": digest,
         "etag": etag(final), "created": not exists}
    )  # fmt: skip


def take_payload(fd: int, framed: bool, size: int, limit: int, label: str) -> tuple[int, str]:
    """Copy the payload (``size`` bytes, or frames up to ``limit``) into ``fd``:
    (bytes, SHA-256). A full disk or quota is said with the sizes."""
    try:
        if framed:
            return copy_frames(fd, limit)
        written, digest = copy_stdin(fd, 0, size)
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        total = None if framed else size
        raise ran_out(exc, f"the file {label}", os.fstat(fd).st_size, total) from exc
    if written != size:
        raise Refused(f"the payload ended {size - written} bytes early")
    return written, digest


#: The largest frame the portal sends (it forwards request body chunks as they arrive).
MAX_FRAME = 16 * 1024 * 1024


def copy_frames(fd: int, limit: int) -> tuple[int, str]:
    """Copy a framed payload (4-byte big-endian length, bytes; an empty frame ends it)
    into ``fd``: (bytes, SHA-256). A file of unknown size can so be streamed, and a
    sender that gives up (no end frame) leaves nothing: more than ``limit`` bytes, or
    an end of input before the end frame, is refused and the temporary file removed."""
    digest = hashlib.sha256()
    size = 0
    source = sys.stdin.buffer
    while True:
        head = source.read(4)
        if len(head) < 4:
            raise Refused("the upload was cut short before the file ended", "invalid")
        count = int.from_bytes(head, "big")
        if count == 0:
            return size, digest.hexdigest()
        if count > MAX_FRAME:
            raise Refused("malformed payload frame")
        size += count
        if size > limit:
            raise Refused(f"the file is larger than the limit of {sized(limit)}", "too_large")
        data = source.read(count)
        if len(data) < count:
            raise Refused("the upload was cut short before the file ended", "invalid")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        digest.update(data)


def check_precondition(info: os.stat_result, if_match: Any, create_only: bool, label: str) -> None:
    if create_only:
        raise FileExistsError(errno.EEXIST, "File exists", label)
    if if_match is None:
        raise Refused(
            f"the file {label} exists; send its ETag in If-Match to replace it",
            "precondition_required",
        )
    tags = [if_match] if isinstance(if_match, str) else list(if_match)
    if "*" not in tags and etag(info) not in tags:
        raise Refused(f"the file {label} was changed since you read it", "precondition")


def unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def nearest_folder(root: Any, path: Any) -> int:
    """A descriptor of the deepest folder on ``path`` that exists (the root at least)."""
    parts = split_relative(path)
    for count in range(len(parts), 0, -1):
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            Target(root, "/".join(parts[:count])) as target,
        ):
            return target.open(O_DIR)
    return os.open(absolute_root(root), O_DIR)


def op_mkdir(request: dict[str, Any]) -> None:
    """A folder (``parents``: and missing ones on the way, ``mkdir -p``). ``mode``
    fixes its bits (under the umask); ``room_for`` first refuses if that many bytes
    cannot fit there for the user (free space and quota)."""
    parents = bool(request.get("parents"))
    mode = int(request.get("mode", 0o777)) & 0o777
    needed = int(request.get("room_for") or 0)
    if needed > 0:  # measured where the folder will be, before any folder is made
        fd = nearest_folder(request.get("root"), request.get("path"))
        try:
            check_room(fd, needed, "the upload")
        finally:
            os.close(fd)
    with Target(request.get("root"), request.get("path"), create_dirs=parents) as target:
        name = target.need_name("create")
        try:
            os.mkdir(name, mode, dir_fd=target.parent)
        except FileExistsError:
            if not (parents and target.resolve_final() and stat.S_ISDIR(target.lstat().st_mode)):
                raise
    answer({"ok": True, "path": target.relative})


def rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """rename(2) that fails with EEXIST rather than replace (renameat2 RENAME_NOREPLACE);
    where the kernel lacks it, a check then a rename (a narrow race)."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        renameat2.argtypes.append(ctypes.c_uint)
        if renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), 1) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), dst)
    try:
        os.stat(dst, dir_fd=dst_dir, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return
    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def op_rename(request: dict[str, Any]) -> None:
    """Rename or move (within one file system), never replacing; links move as links."""
    to_root = request.get("to_root") or request.get("root")
    with (
        Target(request.get("root"), request.get("path")) as source,
        Target(to_root, request.get("to")) as dest,
    ):
        name = source.need_name("move")
        os.stat(name, dir_fd=source.parent, follow_symlinks=False)  # a clear ENOENT
        rename_noreplace(source.parent, name, dest.parent, dest.need_name("replace"))
        os.fsync(dest.parent)
    answer({"ok": True, "path": source.relative, "to": dest.relative})


def op_chmod(request: dict[str, Any]) -> None:
    mode = int(request.get("mode", -1))
    if not 0 <= mode <= 0o3777:
        raise Refused("mode must be permission bits (0 to 3777 octal; no setuid)")
    with Target(request.get("root"), request.get("path")) as target:
        fd = target.open(os.O_PATH)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            mode &= 0o1777  # setgid on a file is not offered
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode)  # the opened inode, whatever its name now
        except FileNotFoundError:
            raise Refused("/proc is not mounted; cannot change modes safely") from None
        after = os.fstat(fd)
    finally:
        os.close(fd)
    answer({"ok": True, "path": target.relative, "mode": stat.S_IMODE(after.st_mode)})


# --- copying ------------------------------------------------------------------------


class CopyReport:
    def __init__(self) -> None:
        self.files = 0
        self.dirs = 0
        self.links = 0
        self.bytes = 0
        self.skipped: list[str] = []
        self.top: tuple[int, int] | None = None  # the copy itself, never copied into itself


def copy_file_data(src: int, dst: int) -> int:
    total = 0
    try:
        while copied := os.copy_file_range(src, dst, 64 * CHUNK):
            total += copied
        return total
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src, total, os.SEEK_SET)
    os.lseek(dst, total, os.SEEK_SET)
    while data := os.read(src, CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]
        total += len(data)
    return total


def copy_entry(
    sdir: int, sname: str, info: os.stat_result, ddir: int, dname: str, report: CopyReport,
    depth: int, label: str,
) -> None:  # fmt: skip
    """Copy one entry without following links: a link is copied as a link."""
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(sname, dir_fd=sdir), dname, dir_fd=ddir)
        report.links += 1
    elif stat.S_ISDIR(info.st_mode):
        if depth > MAX_DEPTH:
            raise Refused(f"the folder {label} is nested too deeply to copy")
        src = os.open(sname, O_DIR | os.O_NOFOLLOW, dir_fd=sdir)
        try:
            os.mkdir(dname, 0o700, dir_fd=ddir)
            dst = os.open(dname, O_DIR | os.O_NOFOLLOW, dir_fd=ddir)
            try:
                made = os.fstat(dst)
                report.top = report.top or (made.st_dev, made.st_ino)
                with os.scandir(src) as it:
                    entries = list(it)
                for entry in entries:
                    child = entry.stat(follow_symlinks=False)
                    if (child.st_dev, child.st_ino) == report.top:
                        continue
                    copy_entry(src, entry.name, child, dst, entry.name, report, depth + 1,
                               f"{label}/{entry.name}")  # fmt: skip
                os.fchmod(dst, stat.S_IMODE(info.st_mode) & 0o3777)
                os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        report.dirs += 1
    elif stat.S_ISREG(info.st_mode):
        src = os.open(sname, O_READ | os.O_NOFOLLOW, dir_fd=sdir)
        try:
            opened = os.fstat(src)
            if not stat.S_ISREG(opened.st_mode):
                report.skipped.append(f"{label}: changed while copying")
                return
            dst = os.open(dname, O_CREATE, 0o600, dir_fd=ddir)
            try:
                report.bytes += copy_file_data(src, dst)
                os.fchmod(dst, stat.S_IMODE(opened.st_mode) & 0o1777)
                os.utime(dst, ns=(opened.st_atime_ns, opened.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        report.files += 1
    else:
        report.skipped.append(f"{label}: not a regular file, folder or link")


def remove_entry(name: str, dir_fd: int) -> None:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def op_copy(request: dict[str, Any]) -> None:
    """Copy a file or a tree to a hidden name beside the destination, then rename it
    into place (never replacing), so a half-made copy is never visible."""
    to_root = request.get("to_root") or request.get("root")
    with (
        Target(request.get("root"), request.get("path")) as source,
        Target(to_root, request.get("to")) as dest,
    ):
        name = source.need_name("copy")
        final = dest.need_name("replace")
        info = os.stat(name, dir_fd=source.parent, follow_symlinks=False)
        try:
            os.stat(final, dir_fd=dest.parent, follow_symlinks=False)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dest.label)
        except FileNotFoundError:
            pass
        temp = hidden_name(final, f"{secrets.token_hex(8)}.copy")
        report = CopyReport()
        try:
            copy_entry(source.parent, name, info, dest.parent, temp, report, 0, source.label)
            rename_noreplace(dest.parent, temp, dest.parent, final)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_entry(temp, dest.parent)
            raise
    answer(
        {"ok": True, "path": source.relative, "to": dest.relative, "files": report.files,
         "dirs": report.dirs, "links": report.links, "bytes": report.bytes,
         "skipped": report.skipped[:100]}
    )  # fmt: skip


# --- trash --------------------------------------------------------------------------


def trash_places(roots: list[Any]) -> list[str]:
    """Where trash may be: the home's, then each root's own (other file systems)."""
    home = pwd.getpwuid(os.getuid()).pw_dir
    places = [os.path.join(home, TRASH)]
    for root in roots:
        place = os.path.join(absolute_root(root), TRASH)
        if place not in places:
            places.append(place)
    return places


def open_trash(base_fd: int, device: int) -> int | None:
    """``base/.hpcportal-trash`` (made 0700 if missing) if it is on ``device``."""
    if os.fstat(base_fd).st_dev != device:
        return None
    with contextlib.suppress(FileExistsError):
        os.mkdir(TRASH, 0o700, dir_fd=base_fd)
    fd = os.open(TRASH, O_DIR | os.O_NOFOLLOW, dir_fd=base_fd)
    if os.fstat(fd).st_dev != device:
        os.close(fd)
        return None
    return fd


def trash_for(target: Target) -> tuple[int, str]:
    """The trash on the same file system as the target: the home's, else the root's."""
    device = os.fstat(target.parent).st_dev
    home = pwd.getpwuid(os.getuid()).pw_dir
    try:
        home_fd = os.open(home, O_DIR)
    except OSError:
        home_fd = -1
    if home_fd >= 0:
        try:
            fd = open_trash(home_fd, device)
        finally:
            os.close(home_fd)
        if fd is not None:
            return fd, os.path.join(home, TRASH)
    fd = open_trash(target.dirs[0], device)
    if fd is not None:
        return fd, os.path.join(target.root, TRASH)
    raise OSError(errno.EXDEV, "no trash on this file system; delete permanently instead")


def inside(fd: int, target: Target) -> bool:
    """Is the directory ``fd`` one of the target's directories (or the target itself)?"""
    mark = os.fstat(fd)
    held = [os.fstat(d) for d in target.dirs]
    if target.name is not None:
        held.append(target.lstat())
    return any((s.st_dev, s.st_ino) == (mark.st_dev, mark.st_ino) for s in held)


def write_json(dir_fd: int, name: str, data: dict[str, Any]) -> None:
    temp = hidden_name(name, f"{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, O_CREATE, 0o600, dir_fd=dir_fd)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def op_delete(request: dict[str, Any]) -> None:
    """To the trash (with what restoring needs), or for good with ``permanent``."""
    with Target(request.get("root"), request.get("path")) as target:
        name = target.need_name("delete")
        info = target.lstat()
        if request.get("permanent"):
            remove_entry(name, target.parent)
            answer({"ok": True, "path": target.relative, "permanent": True})
            return
        trash_fd, trash_path = trash_for(target)
        try:
            if inside(trash_fd, target):
                raise Refused(
                    f"the path {target.label} is in the trash already; delete it permanently"
                )
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            item = f"{stamp}-{secrets.token_hex(4)}"
            meta = {
                "id": item, "root": target.root, "path": target.relative,
                "name": display(name), "type": kind(info.st_mode), "size": info.st_size,
                "deleted_at": time.time(), "label": request.get("label"),
            }  # fmt: skip
            write_json(trash_fd, f"{item}.json", meta)
            try:
                rename_noreplace(target.parent, name, trash_fd, item)
            except BaseException:
                unlink_quietly(f"{item}.json", trash_fd)
                raise
            os.fsync(trash_fd)
        finally:
            os.close(trash_fd)
    answer({"ok": True, "path": target.relative, "trash_id": item, "trash": trash_path})


def read_trash(place: str) -> Iterator[dict[str, Any]]:
    """The metadata of each item in one trash (``place``), with its current type."""
    try:
        fd = os.open(place, O_DIR | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it if e.name.endswith(".json")]
        for name in names:
            if not TRASH_ID.fullmatch(name[:-5]):
                continue
            try:
                with open(os.open(name, O_READ | os.O_NOFOLLOW, dir_fd=fd), "rb") as handle:
                    meta = json.loads(handle.read(65536))
                info = os.stat(name[:-5], dir_fd=fd, follow_symlinks=False)
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("id") == name[:-5]:
                meta["type"] = kind(info.st_mode)
                meta["trash"] = place
                yield meta
    finally:
        os.close(fd)


def op_trash_list(request: dict[str, Any]) -> None:
    places = trash_places(request.get("roots") or [])
    items = [meta for place in places for meta in read_trash(place)]
    items.sort(key=lambda m: float(m.get("deleted_at") or 0), reverse=True)
    answer({"ok": True, "items": items[: int(request.get("limit", 1000))]})


def op_restore(request: dict[str, Any]) -> None:
    """Put a trashed item back where it was (never replacing what is there now)."""
    wanted = request.get("trash_id")
    if wanted is not None and (not isinstance(wanted, str) or not TRASH_ID.fullmatch(wanted)):
        raise Refused("malformed trash id")
    root = absolute_root(request.get("root"))
    relative = "/".join(split_relative(request.get("path", "")))
    roots = [*(request.get("roots") or []), root]
    best: dict[str, Any] | None = None
    for place in trash_places(roots):
        for meta in read_trash(place):
            if wanted is not None:
                if meta["id"] == wanted:
                    best = meta
            elif (meta.get("root"), meta.get("path")) == (root, relative) and (
                best is None or float(meta["deleted_at"]) > float(best["deleted_at"])
            ):
                best = meta
    if best is None:
        raise OSError(errno.ENOENT, "nothing in the trash matches", relative or wanted)
    trash_fd = os.open(best["trash"], O_DIR | os.O_NOFOLLOW)
    try:
        with Target(best["root"], best["path"]) as dest:
            rename_noreplace(trash_fd, best["id"], dest.parent, dest.need_name("restore"))
            os.fsync(dest.parent)
        unlink_quietly(f"{best['id']}.json", trash_fd)
    finally:
        os.close(trash_fd)
    answer({"ok": True, "root": best["root"], "path": best["path"], "trash_id": best["id"]})


# --- walking trees (zip, search, usage) ---------------------------------------------


def tree(
    dfd: int, prefix: str, hidden: bool, depth: int = 0
) -> Iterator[tuple[int, os.DirEntry[str], str]]:
    """(directory descriptor, entry, relative name) below ``dfd``, depth first.

    Sub-directories are opened with ``O_NOFOLLOW`` relative to their parent, so a
    link swapped in for one is not entered. Unreadable directories are passed over,
    and so is a trash folder: a zip or a search of a folder leaves its trash out.
    """
    try:
        with os.scandir(dfd) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if (not hidden and entry.name.startswith(".")) or entry.name == TRASH:
            continue  # the trash is not part of a folder's contents
        relative = f"{prefix}/{entry.name}" if prefix else entry.name
        yield dfd, entry, relative
        if depth < MAX_DEPTH and entry.is_dir(follow_symlinks=False):
            try:
                sub = os.open(entry.name, O_DIR | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError:
                continue
            try:
                yield from tree(sub, relative, hidden, depth + 1)
            finally:
                os.close(sub)


def zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    moment = time.localtime(min(max(mtime, 315532800), 4354819199))  # 1980..2107
    return moment[:6]


def op_zip(request: dict[str, Any]) -> None:
    """A folder as a zip archive streamed to stdout (after one JSON line).

    Entries are read through their directory's descriptor with ``O_NOFOLLOW``: links
    are skipped, and a file swapped for a link during the walk fails to open and is
    skipped too, so no link's target ever ends up in the archive. Unreadable entries
    are listed in ``hpcportal-skipped.txt`` at the end.
    """
    with Target(request.get("root"), request.get("path", "")) as target:
        fd = target.open(O_DIR)
        top = display(target.name or os.path.basename(target.root.rstrip("/")) or "files")
    try:
        begin({"ok": True, "name": top})
        out = open(1, "wb", buffering=CHUNK, closefd=False)  # noqa: SIM115 (fd 1 stays open)
        skipped: list[str] = []
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for dfd, entry, relative in tree(fd, "", bool(request.get("hidden", True))):
                add_to_zip(archive, dfd, entry, f"{top}/{display(relative)}", skipped)
            if skipped:
                archive.writestr(f"{top}/hpcportal-skipped.txt", "\n".join(skipped) + "\n")
        out.flush()
    finally:
        os.close(fd)


def compressible(sample: bytes) -> bool:
    """Worth deflating? Data that is compressed already (images, archives, HDF5 with
    filters) is stored as it is: deflating it costs time and saves nothing."""
    probe = sample[: 64 * 1024]
    return len(probe) < 512 or len(zlib.compress(probe, 1)) < 0.9 * len(probe)


def add_to_zip(
    archive: zipfile.ZipFile, dfd: int, entry: os.DirEntry[str], name: str, skipped: list[str]
) -> None:
    if entry.is_symlink():
        skipped.append(f"{name}: symbolic link, not followed")
        return
    if entry.is_dir(follow_symlinks=False):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            skipped.append(f"{name}: {exc.strerror}")
            return
        folder = zipfile.ZipInfo(name + "/", zip_time(info.st_mtime))
        folder.external_attr = (0o40000 | stat.S_IMODE(info.st_mode)) << 16 | 0x10
        archive.writestr(folder, b"")
        return
    try:
        fd = os.open(entry.name, O_READ | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError as exc:
        skipped.append(f"{name}: {exc.strerror}")
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            skipped.append(f"{name}: not a regular file")
            return
        first = os.read(fd, min(CHUNK, info.st_size))
        member = zipfile.ZipInfo(name, zip_time(info.st_mtime))
        member.external_attr = (0o100000 | stat.S_IMODE(info.st_mode)) << 16
        member.file_size = info.st_size
        member.compress_type = zipfile.ZIP_DEFLATED if compressible(first) else zipfile.ZIP_STORED
        for level in ("compress_level", "_compresslevel"):  # Python >= 3.13, older
            if hasattr(member, level):
                setattr(member, level, 1)
                break
        remaining = info.st_size
        with archive.open(member, "w") as sink:
            data = first
            while data:
                sink.write(data)
                remaining -= len(data)
                data = os.read(fd, min(CHUNK, remaining)) if remaining > 0 else b""
    finally:
        os.close(fd)


def content_match(dfd: int, name: str, needle: bytes, cap: int) -> dict[str, Any] | None:
    """Line number and text of the first line holding ``needle`` (lower-cased), if any."""
    try:
        fd = os.open(name, O_READ | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
            return None
        data = os.read(fd, cap)
    finally:
        os.close(fd)
    if b"\0" in data[:8192]:
        return None  # binary
    at = data.lower().find(needle)
    if at < 0:
        return None
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    line = data[start : end if end >= 0 else len(data)]
    return {"line": data.count(b"\n", 0, at) + 1, "text": line[:300].decode("utf-8", "replace")}


def op_search(request: dict[str, Any]) -> None:
    """Names matching a glob (and optionally holding a text) under a folder, as JSON
    lines, bounded in time and count; a last line says whether the search finished."""
    pattern = request.get("glob") or "*"
    if not isinstance(pattern, str) or len(pattern) > 255 or "\0" in pattern:
        raise Refused("bad search pattern")
    content = request.get("content")
    needle = content.lower().encode() if isinstance(content, str) and content else None
    cap = int(request.get("content_max_bytes", 10 * CHUNK))
    limit = int(request.get("max_results", 1000))
    deadline = time.monotonic() + float(request.get("seconds", 10))
    fold = not request.get("case_sensitive")
    pattern = pattern.lower() if fold else pattern
    with Target(request.get("root"), request.get("path", "")) as target:
        fd = target.open(O_DIR)
        base = target.relative
    found = scanned = 0
    reason = None
    try:
        begin({"ok": True, "path": base})
        for dfd, entry, relative in tree(fd, base, bool(request.get("hidden"))):
            scanned += 1
            if time.monotonic() > deadline:
                reason = "time"
                break
            name = entry.name.lower() if fold else entry.name
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            hit = None
            if needle is not None:
                if not entry.is_file(follow_symlinks=False):
                    continue
                hit = content_match(dfd, entry.name, needle, cap)
                if hit is None:
                    continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            result = {**describe(entry.name, info), "path": display(relative)}
            if hit is not None:
                result["match"] = hit
            answer(result)
            found += 1
            if found >= limit:
                reason = "count"
                break
    finally:
        os.close(fd)
    answer(
        {
            "done": True,
            "matches": found,
            "scanned": scanned,
            "truncated": reason is not None,
            "reason": reason,
        }
    )


# --- usage and roots ----------------------------------------------------------------


def space(fd: int) -> dict[str, Any]:
    vfs = os.fstatvfs(fd)
    total = vfs.f_blocks * vfs.f_frsize
    free = vfs.f_bfree * vfs.f_frsize
    available = vfs.f_bavail * vfs.f_frsize
    used = total - free
    usable = used + available
    return {
        "total": total, "used": used, "available": available,
        "percent": round(100.0 * used / usable, 1) if usable else 0.0,
    }  # fmt: skip


def parse_quota(text: str) -> list[dict[str, Any]]:
    """``quota -w -p`` output (1 KiB blocks) as one dict per file system."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 9 or fields[0] == "Filesystem" or not fields[1].rstrip("*").isdigit():
            continue

        def kib(value: str) -> int:
            return int(value.rstrip("*")) * 1024

        entries.append({
            "filesystem": fields[0], "used": kib(fields[1]), "soft": kib(fields[2]),
            "hard": kib(fields[3]), "files": int(fields[5].rstrip("*")),
            "files_soft": int(fields[6]), "files_hard": int(fields[7]),
            "over": fields[1].endswith("*") or fields[5].endswith("*"),
        })  # fmt: skip
    return entries


def quota_report() -> dict[str, Any]:
    program = shutil.which("quota", path=SYSTEM_PATH)
    if program is None:
        return {"known": False, "reason": "the quota command is not installed; quota unknown"}
    try:
        done = subprocess.run(
            [program, "-w", "-p"], capture_output=True, text=True, timeout=10, check=False,
            env={"PATH": SYSTEM_PATH, "LANG": "C"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"known": False, "reason": f"quota failed: {exc}"}
    if re.search(r"\):\s*none\s*$", done.stdout, re.M):
        return {"known": True, "entries": []}
    entries = parse_quota(done.stdout)
    if not entries and done.returncode != 0:
        return {"known": False, "reason": (done.stderr.strip() or "quota failed")[:300]}
    return {"known": True, "entries": entries}


def mount_source(path: str) -> str | None:
    """The device of the mount holding ``path`` (from /proc/self/mounts), for quota."""
    best, source = "", None
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(
                    best
                ):
                    best, source = point, fields[0]
    except OSError:
        return None
    return source


def sized(count: int) -> str:
    """``12345678 bytes (11.8 MiB)``: exact for the record, readable for a person."""
    value, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{count} bytes" if unit == "bytes" else f"{count} bytes ({value:.1f} {unit})"


def quota_left(device: str | None, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The user's quota entry for ``device`` with a hard block limit, and what it leaves
    (``left``). Only the hard limit refuses writes for certain (a soft one allows more
    during its grace time), so only it is checked before an upload."""
    for entry in entries:
        if device is not None and entry.get("filesystem") == device and entry.get("hard"):
            return {**entry, "left": max(0, int(entry["hard"]) - int(entry["used"]))}
    return None


def room_refusal(
    needed: int, available: int, quota: dict[str, Any] | None, what: str
) -> Refused | None:
    """Why ``needed`` bytes do not fit, given the space free for the user and their
    quota entry there (from ``quota_left``), or None when they fit."""
    if needed > available:
        return Refused(
            f"{what} needs {sized(needed)}, but the file system has only {sized(available)} "
            "free for you",
            "no_space",
        )
    if quota is not None and needed > quota["left"]:
        return Refused(
            f"{what} needs {sized(needed)}, but your quota on {quota['filesystem']} leaves "
            f"only {sized(quota['left'])} (limit {sized(int(quota['hard']))}, "
            f"used {sized(int(quota['used']))})",
            "quota",
        )
    return None


def check_room(fd: int, needed: int, what: str) -> None:
    """Refuse ``needed`` more bytes that cannot fit where ``fd`` (a folder or a file) lies,
    for this user: the file system's space for unprivileged users (``statvfs``
    ``f_bavail``, so root's reserve does not count) and, where the ``quota`` command
    reports one, the user's hard limit there (``quota_report``, as for usage)."""
    if needed <= 0:
        return
    available = int(space(fd)["available"])
    quota = None
    if needed <= available:  # the quota is only asked when the disk has room
        entries = quota_report().get("entries") or []
        if entries:
            with contextlib.suppress(OSError):
                device = mount_source(os.readlink(f"/proc/self/fd/{fd}"))
                quota = quota_left(device, entries)
    refusal = room_refusal(needed, available, quota, what)
    if refusal is not None:
        raise refusal


#: The kernel's "no room": a full file system, or the user's quota reached.
NO_ROOM = {errno.ENOSPC: "no_space", errno.EDQUOT: "quota"}


def ran_out(exc: OSError, what: str, written: int, total: int | None) -> Refused:
    """ENOSPC / EDQUOT met while writing, said with the sizes (the caller has removed
    what was written)."""
    reason = "the file system is full" if exc.errno == errno.ENOSPC else "your quota is reached"
    of = f" of {sized(total)}" if total is not None else ""
    return Refused(
        f"{reason}: {what} stopped after {sized(written)}{of}, and what was written is removed",
        NO_ROOM[exc.errno or errno.ENOSPC],
    )


def op_roots(request: dict[str, Any]) -> None:
    """Which of the given roots exist for this user, with their free space."""
    roots = []
    for root in request.get("roots") or []:
        entry: dict[str, Any] = {"root": absolute_root(root)}
        try:
            fd = os.open(root, O_DIR)
        except FileNotFoundError:
            entry["exists"] = False
        except OSError as exc:
            entry.update(exists=True, accessible=False, error=exc.strerror)
        else:
            try:
                entry.update(exists=True, accessible=True, writable=access(fd, os.W_OK))
                if request.get("space"):
                    entry.update(space(fd), device=mount_source(os.path.realpath(root)))
            finally:
                os.close(fd)
        roots.append(entry)
    result: dict[str, Any] = {"ok": True, "roots": roots}
    if request.get("quota"):
        result["quota"] = quota_report()
    answer(result)


def entry_size(dfd: int, entry: os.DirEntry[str], deadline: float) -> dict[str, Any] | None:
    """Apparent and on-disk bytes of an entry, a folder with its whole tree (links not
    followed); ``complete`` is False when the deadline or an unreadable folder cut it."""
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    size: dict[str, Any] = {
        "name": display(entry.name),
        "type": kind(info.st_mode),
        "bytes": info.st_size,
        "disk_bytes": info.st_blocks * 512,
        "entries": 1,
        "complete": True,
    }
    if not entry.is_dir(follow_symlinks=False):
        return size
    try:
        sub = os.open(entry.name, O_DIR | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return {**size, "complete": False}
    try:
        for _, child, _ in tree(sub, "", True):
            if time.monotonic() > deadline:
                size["complete"] = False
                break
            try:
                st = child.stat(follow_symlinks=False)
            except OSError:
                continue
            size["bytes"] += st.st_size
            size["disk_bytes"] += st.st_blocks * 512
            size["entries"] += 1
    finally:
        os.close(sub)
    return size


def op_usage(request: dict[str, Any]) -> None:
    """Sizes of a folder's entries (largest on disk first) and the file system's space,
    computed for at most ``seconds``."""
    deadline = time.monotonic() + float(request.get("seconds", 10))
    limit = int(request.get("limit", 100))
    with Target(request.get("root"), request.get("path", "")) as target:
        fd = target.open(O_DIR)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        sizes = [s for s in (entry_size(fd, e, deadline) for e in entries) if s is not None]
        sizes.sort(key=lambda s: int(s["disk_bytes"]), reverse=True)
        result = {
            "ok": True,
            "path": target.relative,
            "complete": all(s["complete"] for s in sizes),
            **space(fd),
            "entries": sizes[:limit],
        }
    finally:
        os.close(fd)
    answer(result)


# --- resumable uploads --------------------------------------------------------------


def op_upload(request: dict[str, Any]) -> None:
    """One step of a resumable upload into ``root/path`` (a folder) as file ``name``.

    The bytes go to a hidden ``.NAME.ID.part`` beside the final name, created here
    (``create``), appended at the recorded offset (``append``: a longer file, left by
    an interrupted request, is cut back first) and linked to its name once complete
    (never replacing a file), then removed; ``abort`` removes it. So an unfinished
    upload is never visible under its name.
    """
    action = request.get("action")
    name = plain_name(request.get("name"))
    upload_id = request.get("upload_id")
    if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
        raise Refused("malformed upload id")
    temp = hidden_name(name, f"{upload_id}.part")
    with Target(request.get("root"), request.get("path", "")) as target:
        folder = target.open(O_DIR)
    try:
        if action == "create":
            try:
                os.stat(name, dir_fd=folder, follow_symlinks=False)
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)
            except FileNotFoundError:
                pass
            length, reserved = int(request.get("length", 0)), int(request.get("reserved", 0))
            what = "the upload" + (
                f" (with {sized(reserved)} still to come for your other unfinished uploads here)"
                if reserved
                else ""
            )
            check_room(folder, length + reserved, what)
            os.close(os.open(temp, O_CREATE, 0o600, dir_fd=folder))
            if request.get("append"):
                # tus creation-with-upload: the first bytes follow on stdin, so a small
                # file is created, written and linked by this one run of the helper.
                answer(append_upload(folder, temp, name, {**request, "offset": 0}, checked=True))
            else:
                answer({"ok": True, "offset": 0, "temp": temp})
        elif action == "abort":
            unlink_quietly(temp, folder)
            answer({"ok": True})
        elif action == "append":
            answer(append_upload(folder, temp, name, request))
        else:
            raise Refused(f"unknown upload action {action!r}")
    finally:
        os.close(folder)


def append_upload(
    folder: int, temp: str, name: str, request: dict[str, Any], *, checked: bool = False
) -> dict[str, Any]:
    """Append the payload to the partial file (``checked``: the room for the whole file
    was checked by this run already, at creation)."""
    offset = int(request["offset"])
    length = int(request["length"])
    fd = os.open(temp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise Refused("the upload's partial file was replaced")
        if info.st_size < offset:
            raise Refused(
                f"the partial file holds {info.st_size} bytes, fewer than the {offset} recorded",
                "conflict",
            )
        if info.st_size > offset:
            os.ftruncate(fd, offset)  # bytes of an interrupted request that was not recorded
        try:
            # The rest of the file must fit; if it cannot, the upload cannot finish, and
            # its partial file goes now rather than fill the user's area until it expires.
            if not checked:
                check_room(fd, length - offset, "the rest of the upload")
            return append_chunk(fd, folder, temp, name, request)
        except Refused as exc:
            if exc.kind not in NO_ROOM.values():
                raise
            unlink_quietly(temp, folder)
            raise Refused(f"{exc}; the partial upload is removed", exc.kind) from exc
        except OSError as exc:
            if exc.errno not in NO_ROOM:
                raise
            written = os.fstat(fd).st_size
            unlink_quietly(temp, folder)
            raise ran_out(exc, "the upload", written, length) from exc
    finally:
        os.close(fd)


def append_chunk(
    fd: int, folder: int, temp: str, name: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Write the payload at the offset; link the file to its name once it is whole."""
    offset = int(request["offset"])
    length = int(request["length"])
    expected = request.get("expected")
    checksum = request.get("checksum")
    received, digest = copy_stdin(fd, offset, length - offset)
    whole = expected is None or received == int(expected)
    if checksum is not None and (not whole or digest != checksum):
        os.ftruncate(fd, offset)
        return {"ok": False, "error": "checksum", "offset": offset, "received": received,
                "message": "the chunk's checksum does not match" if whole
                else "the chunk was cut short, so its checksum cannot be verified"}  # fmt: skip
    os.fsync(fd)
    result = {"ok": True, "offset": offset + received, "received": received, "complete": False}
    if offset + received == length:
        os.fchmod(fd, 0o666 & ~current_umask())
        os.link(temp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        os.unlink(temp, dir_fd=folder)
        os.fsync(folder)
        result["complete"] = True
    return result


FILE_OPERATIONS = {
    "list": op_list,
    "read": op_read,
    "write": op_write,
    "mkdir": op_mkdir,
    "rename": op_rename,
    "move": op_rename,
    "copy": op_copy,
    "chmod": op_chmod,
    "delete": op_delete,
    "restore": op_restore,
    "trash": op_trash_list,
    "zip": op_zip,
    "search": op_search,
    "usage": op_usage,
    "roots": op_roots,
    "upload": op_upload,
}
