"""Room for the user: free space and quota where a path lies (checked before an
upload or write, and said with sizes when the kernel runs out), and the ``roots`` and
``usage`` operations. Part of the helper program (standard library only)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
import time
from typing import Any

from hpcportal.runas.helper_read import access, kind
from hpcportal.runas.helper_walk import O_DIR, Refused, Target, absolute_root, answer, display, tree

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


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
