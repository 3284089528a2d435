"""The ground of the run-as helper's file operations: how they answer, and how a
root-relative path is walked (``Target``) and a tree below it (``tree``).

Part of the helper program: standard library only. ``runas/assemble.py`` pastes the
helper modules, in order, into ``helper.py`` so that the program run as the user
(from argv under runuser, or the copy ``hpcportal runas install`` writes) stays one
self-contained file an administrator can read; a module may use what the modules
before it define. Tests import them directly.

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
import json
import os
import stat
from collections.abc import Iterator
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
