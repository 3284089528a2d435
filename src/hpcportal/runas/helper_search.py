"""``search``: names matching a glob (and holding a text) under a folder, streamed
as JSON lines, bounded in time and count. Part of the helper program (standard
library only)."""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from typing import Any

from hpcportal.runas.helper_read import describe
from hpcportal.runas.helper_walk import (
    CHUNK,
    O_DIR,
    O_READ,
    Refused,
    Target,
    answer,
    begin,
    display,
    tree,
)


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
