"""The helper's changes to files: atomic writes (a sized or a framed payload),
``mkdir``, ``rename``/``move`` (never replacing), ``chmod`` and ``copy`` (to a hidden
name, then renamed into place). Part of the helper program (standard library only)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import sys
from typing import Any

from hpcportal.runas.helper_read import current_umask, etag
from hpcportal.runas.helper_space import NO_ROOM, check_room, ran_out, sized
from hpcportal.runas.helper_walk import (
    CHUNK,
    MAX_DEPTH,
    O_CREATE,
    O_DIR,
    O_READ,
    Refused,
    Target,
    answer,
    hidden_name,
    nearest_folder,
)

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


def keep_mode_and_times(fd: int, info: os.stat_result, bits: int) -> None:
    """Give the copy ``fd`` the original's permission bits (within ``bits``: setgid is
    kept on folders only) and its access and modification times."""
    os.fchmod(fd, stat.S_IMODE(info.st_mode) & bits)
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))


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
                keep_mode_and_times(dst, info, 0o3777)
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
                keep_mode_and_times(dst, opened, 0o1777)
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
