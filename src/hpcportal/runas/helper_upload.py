"""``upload``: the steps of a resumable (tus) upload into a hidden partial file that
is linked to its name once whole. Part of the helper program (standard library
only)."""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Any

from hpcportal.runas.helper_read import current_umask
from hpcportal.runas.helper_space import NO_ROOM, check_room, ran_out, sized
from hpcportal.runas.helper_walk import (
    O_CREATE,
    O_DIR,
    Refused,
    Target,
    answer,
    hidden_name,
    plain_name,
)
from hpcportal.runas.helper_write import copy_stdin, unlink_quietly

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


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
