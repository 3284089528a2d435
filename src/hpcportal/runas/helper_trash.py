"""The trash: ``delete`` (to the trash on the same file system, or for good),
``trash`` (what is in it) and ``restore``. Part of the helper program (standard
library only)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from hpcportal.runas.helper_read import kind
from hpcportal.runas.helper_walk import (
    O_CREATE,
    O_DIR,
    O_READ,
    TRASH,
    Refused,
    Target,
    absolute_root,
    answer,
    display,
    hidden_name,
    split_relative,
)
from hpcportal.runas.helper_write import remove_entry, rename_noreplace, unlink_quietly

TRASH_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


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
