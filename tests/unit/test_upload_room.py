"""Room for an upload, and the helper's streamed (framed) writes that leave nothing behind.

The quota arithmetic runs on recorded ``quota -w -p`` output, because this machine's
kernel has no quota support to produce a real one (see
``tests/integration/test_upload_space.py``); the writes run the real helper as alice.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.errors import InsufficientStorage, InvalidInput, PayloadTooLarge
from hpcportal.runas import RunAs
from hpcportal.runas.client import final_answer
from hpcportal.runas.helper_space import parse_quota, quota_left, room_refusal, sized

KiB, MiB, GiB = 1024, 1024**2, 1024**3

#: ``quota -w -p`` as alice on a host with quotas (1 KiB blocks; grace in seconds).
RECORDED_QUOTA = """\
Disk quotas for user alice (uid 1001):
     Filesystem   space   quota   limit   grace   files   quota   limit   grace
      /dev/sdb1  7900000  8000000 10000000       0   1200       0       0       0
      /dev/sdc1  4000000*  3000000  5000000  604800     10       0       0       0
      /dev/sdd1     100       0       0       0     10       0       0       0
"""


def test_sizes_are_exact_and_readable() -> None:
    assert sized(512) == "512 bytes"
    assert sized(10 * MiB) == "10485760 bytes (10.0 MiB)"
    assert sized(3 * GiB // 2) == "1610612736 bytes (1.5 GiB)"


def test_the_quota_of_the_right_file_system_with_a_hard_limit() -> None:
    entries = parse_quota(RECORDED_QUOTA)
    sdb1 = quota_left("/dev/sdb1", entries)
    assert sdb1 is not None and sdb1["left"] == (10000000 - 7900000) * KiB
    assert quota_left("/dev/sdd1", entries) is None  # no limit set
    assert quota_left("/dev/other", entries) is None
    assert quota_left(None, entries) is None


def test_room_refusals_name_the_sizes() -> None:
    sdb1 = quota_left("/dev/sdb1", parse_quota(RECORDED_QUOTA))
    left = (10000000 - 7900000) * KiB  # 2.0 GiB
    assert room_refusal(GiB, 200 * GiB, sdb1, "the upload") is None
    disk = room_refusal(300 * GiB, 200 * GiB, sdb1, "the upload")
    assert disk is not None and disk.kind == "no_space"
    assert str(disk) == (
        f"the upload needs {300 * GiB} bytes (300.0 GiB), but the file system has only "
        f"{200 * GiB} bytes (200.0 GiB) free for you"
    )
    quota = room_refusal(3 * GiB, 200 * GiB, sdb1, "the upload")
    assert quota is not None and quota.kind == "quota"
    assert f"your quota on /dev/sdb1 leaves only {left} bytes" in str(quota)
    assert f"limit {10000000 * KiB} bytes" in str(quota) and f"used {7900000 * KiB}" in str(quota)
    assert room_refusal(3 * GiB, 200 * GiB, None, "the upload") is None  # no quota known


# --- the helper as alice ----------------------------------------------------------------


@pytest.fixture(scope="module")
def runas() -> RunAs:
    if os.geteuid() != 0:
        pytest.skip("becoming alice needs root")
    try:
        pwd.getpwnam("alice")
    except KeyError:
        pytest.skip("no user alice (hpcportal dev-cluster up creates the demo users)")
    return RunAs(method="runuser")


@pytest.fixture
def folder(runas: RunAs) -> Iterator[Path]:
    alice = pwd.getpwnam("alice")
    base = Path(tempfile.mkdtemp(prefix="hpcportal-room-", dir="/tmp"))
    os.chown(base, alice.pw_uid, alice.pw_gid)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def frames(*pieces: bytes, end: bool = True) -> bytes:
    body = b"".join(struct.pack(">I", len(p)) + p for p in pieces)
    return body + (struct.pack(">I", 0) if end else b"")


def write(runas: RunAs, path: Path, payload: bytes, max_size: int) -> dict[str, Any]:
    request = {
        "op": "write", "root": str(path.parent), "path": path.name, "framed": True,
        "max_size": max_size,
    }  # fmt: skip
    return runas.call("alice", request, payload=payload)


def test_framed_write_links_the_whole_file(runas: RunAs, folder: Path) -> None:
    answer = write(runas, folder / "data.bin", frames(b"abc", b"defg"), max_size=7)
    assert answer["size"] == 7 and (folder / "data.bin").read_bytes() == b"abcdefg"
    assert os.listdir(folder) == ["data.bin"]


def test_framed_write_cut_short_or_too_large_leaves_nothing(runas: RunAs, folder: Path) -> None:
    with pytest.raises(InvalidInput, match="cut short"):
        write(runas, folder / "cut.bin", frames(b"abc", end=False), max_size=100)
    with pytest.raises(InvalidInput, match="cut short"):
        write(runas, folder / "cut.bin", frames(b"abc")[:5], max_size=100)
    with pytest.raises(PayloadTooLarge, match="limit"):
        write(runas, folder / "big.bin", frames(b"a" * 60, b"b" * 60), max_size=100)
    assert os.listdir(folder) == []


def test_mkdir_with_room_for_refuses_what_cannot_fit(runas: RunAs, folder: Path) -> None:
    vfs = os.statvfs(folder)
    free = vfs.f_bavail * vfs.f_frsize
    target = folder / "uploads" / "batch"
    request = {"op": "mkdir", "root": str(folder), "path": "uploads/batch", "parents": True}
    with pytest.raises(InsufficientStorage, match="free for you"):
        runas.call("alice", {**request, "room_for": free + 100 * GiB})
    assert not (folder / "uploads").exists()  # measured at the root, before any mkdir
    runas.call("alice", {**request, "room_for": 1})
    assert target.is_dir()


def test_creation_with_upload_is_one_helper_run_that_exits_by_itself(
    runas: RunAs, folder: Path
) -> None:
    """One run creates, writes and links a small file; once it has answered it is waited
    for, not terminated: under runuser a relayed SIGTERM costs 2 s (runuser sleeps
    before it exits), which was most of a small upload's time."""

    async def upload() -> tuple[dict[str, Any], int | None]:
        request = {
            "op": "upload", "action": "create", "root": str(folder), "path": "",
            "name": "small.bin", "upload_id": "0" * 32, "length": 3, "append": True,
            "expected": 3,
        }  # fmt: skip
        stream = await runas.open_stream("alice", request)
        try:
            await stream.write(b"abc")
            await stream.end_input()
            answer = await final_answer(stream, 60)
            return answer, stream.proc.returncode
        finally:
            await stream.aclose()

    answer, code = asyncio.run(upload())
    assert answer["complete"] and answer["offset"] == 3
    assert code == 0  # exited by itself: not signalled
    assert (folder / "small.bin").read_bytes() == b"abc"
    assert os.listdir(folder) == ["small.bin"]  # no partial file left
