"""``zip``: a folder streamed as a zip archive, links never followed. Part of the
helper program (standard library only)."""

from __future__ import annotations

import os
import stat
import time
import zipfile
import zlib
from typing import Any

from hpcportal.runas.helper_walk import CHUNK, O_DIR, O_READ, Target, begin, display, tree


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
