"""The run-as helper's file operations, run as alice under ``runuser`` like the portal
does as root (``RunAs(method="runuser")``), on a tree alice owns under /tmp.

They need root (to become alice) and the demo users (``hpcportal dev-cluster up``
creates them); without either they are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcportal.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    IsDirectory,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from hpcportal.runas import RunAs
from hpcportal.runas.helper import OPERATIONS
from hpcportal.runas.helper_files import FILE_OPERATIONS
from hpcportal.runas.helper_walk import Refused, Target


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name} (hpcportal dev-cluster up creates the demo users)")


@pytest.fixture(scope="module")
def runas() -> RunAs:
    if os.geteuid() != 0:
        pytest.skip("becoming alice needs root")
    _user("alice")
    _user("bob")
    return RunAs(method="runuser")


@pytest.fixture
def root(runas: RunAs) -> Iterator[Path]:
    """An empty folder owned by alice (a file area's root)."""
    alice = _user("alice")
    base = Path(tempfile.mkdtemp(prefix="hpcportal-helper-", dir="/tmp"))
    os.chown(base, alice.pw_uid, alice.pw_gid)
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_alice(runas: RunAs, request: dict[str, Any], payload: bytes | None = None) -> dict[str, Any]:
    return runas.call("alice", {"umask": 0o022, **request}, payload=payload)


def make(root: Path, relative: str, data: bytes = b"x", owner: str = "alice") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    user = _user(owner)
    for p in [path, *path.relative_to(root).parents]:
        target = root / p
        if target != root:
            os.chown(target, user.pw_uid, user.pw_gid)
    return path


# --- walking: checked in process (the logic does not depend on who runs it) -----------


def test_target_refuses_dotdot_absolute_and_nul(root: Path) -> None:
    for bad in ("../etc", "a/../../etc", "/etc/passwd", "a\0b", "x/../y"):
        with pytest.raises(Refused):
            Target(str(root), bad)
    (root / "a").mkdir()
    with Target(str(root), "./a//b/.") as target:  # '.' and empty parts are dropped
        assert target.relative == "a/b"


def test_target_follows_links_inside_and_refuses_links_out(root: Path) -> None:
    make(root, "data/real/file.txt", b"inside")
    (root / "rel").symlink_to("data/real")
    (root / "abs").symlink_to(root / "data")
    (root / "data" / "up").symlink_to("../data/real/file.txt")
    (root / "out").symlink_to("/etc")
    (root / "climb").symlink_to("../../etc")
    (root / "loop").symlink_to("loop")
    for path in ("rel/file.txt", "abs/real/file.txt", "data/up"):
        with Target(str(root), path) as target:
            fd = target.open(os.O_RDONLY)
            assert os.read(fd, 100) == b"inside"
            os.close(fd)
    for path in ("out/passwd", "out", "climb/passwd"):
        with pytest.raises(Refused) as refused, Target(str(root), path) as target:
            target.open(os.O_RDONLY)
        assert refused.value.kind == "outside"
    with pytest.raises(OSError), Target(str(root), "loop") as target:
        target.open(os.O_RDONLY)


# --- the operations, as alice -----------------------------------------------------------


def test_list_pages_sorts_and_hides(runas: RunAs, root: Path) -> None:
    make(root, "b.txt", b"12345")
    make(root, "a.txt", b"1")
    make(root, "C/x", b"")
    make(root, ".hidden", b"")
    os.utime(root / "b.txt", (1, 1))
    page = as_alice(runas, {"op": "list", "root": str(root), "path": ""})
    assert [e["name"] for e in page["entries"]] == ["C", "a.txt", "b.txt"]  # folders first
    assert page["total"] == 3 and page["type"] == "directory"
    entry = page["entries"][1]
    assert entry["owner"] == "alice" and entry["permissions"] == "-rw-r--r--"
    by_size = as_alice(runas, {"op": "list", "root": str(root), "sort": "-size"})
    assert [e["name"] for e in by_size["entries"]] == ["C", "b.txt", "a.txt"]  # folders first
    by_time = as_alice(runas, {"op": "list", "root": str(root), "sort": "mtime", "hidden": True})
    assert by_time["entries"][1]["name"] == "b.txt" and by_time["total"] == 4
    second = as_alice(runas, {"op": "list", "root": str(root), "offset": 1, "limit": 1})
    assert [e["name"] for e in second["entries"]] == ["a.txt"]
    info = as_alice(runas, {"op": "list", "root": str(root), "path": "a.txt", "entries": False})
    assert info["type"] == "file" and "entries" not in info and info["etag"]


def test_name_pages_match_a_full_sort_both_ways(runas: RunAs, root: Path) -> None:
    """Pages by name come from a heap of offset + limit entries, not a full sort: they
    must be exactly the slices of the full order, folders first, in both directions."""
    names = ["b", "B", "a", "Zeta", "émile", "10", "9", "_x"]
    for name in names:
        make(root, f"{name}.txt", b"")
        make(root, f"dir-{name}/keep", b"")
    everything = [f"dir-{n}" for n in names] + [f"{n}.txt" for n in names]
    folders, files = everything[: len(names)], everything[len(names) :]

    def order(items: list[str], reverse: bool) -> list[str]:
        return sorted(items, key=lambda n: (n.casefold(), n), reverse=reverse)

    for sort, reverse in (("name", False), ("-name", True)):
        expected = order(folders, reverse) + order(files, reverse)
        seen = []
        for offset in range(0, len(expected), 3):
            page = as_alice(
                runas,
                {"op": "list", "root": str(root), "sort": sort, "offset": offset, "limit": 3},
            )
            seen += [e["name"] for e in page["entries"]]
        assert seen == expected, sort


def test_first_page_of_100000_entries_is_fast(runas: RunAs, root: Path) -> None:
    big = root / "big"
    big.mkdir()
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(100_000):
            os.close(os.open(f"f{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    started = time.perf_counter()
    page = as_alice(runas, {"op": "list", "root": str(root), "path": "big", "limit": 100})
    seconds = time.perf_counter() - started
    assert page["total"] == 100_000
    assert [e["name"] for e in page["entries"]][:2] == ["f000000", "f000001"]
    assert seconds < 1.5, f"first page took {seconds:.2f} s"


def read(runas: RunAs, root: Path, path: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
    return runas.read("alice", {"op": "read", "root": str(root), "path": path, **fields})


def test_read_ranges_and_refusals(runas: RunAs, root: Path) -> None:
    make(root, "f.bin", bytes(range(100)))
    head, data = read(runas, root, "f.bin", range={"start": 10, "end": 19})
    assert data == bytes(range(10, 20)) and head["partial"] and head["size"] == 100
    head, data = read(runas, root, "f.bin", range={"start": None, "end": 5})
    assert data == bytes(range(95, 100))
    head, data = read(runas, root, "f.bin", range={"start": 500, "end": None})
    assert head["satisfiable"] is False and data == b""
    head, data = read(runas, root, "f.bin", range={"start": 0, "end": 1}, if_range="stale")
    assert not head["partial"] and len(data) == 100  # If-Range mismatch: the whole file
    (root / "dir").mkdir()
    with pytest.raises(IsDirectory):
        read(runas, root, "dir")
    os.mkfifo(root / "fifo")
    with pytest.raises(Conflict):  # refused at once, never blocks on the FIFO
        read(runas, root, "fifo")
    with pytest.raises(NotFound):
        read(runas, root, "missing")


def test_kernel_decides_bobs_private_file_is_403(runas: RunAs, root: Path) -> None:
    shared = root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private = make(root, "shared/bob-private.txt", b"bob's secret", owner="bob")
    private.chmod(0o600)
    with pytest.raises(Forbidden) as refused:
        read(runas, root, "shared/bob-private.txt")
    assert "permission denied" in refused.value.message
    with pytest.raises(Forbidden):  # sticky folder: only bob may remove it
        as_alice(runas, {"op": "delete", "root": str(root), "path": "shared/bob-private.txt",
                         "permanent": True})  # fmt: skip
    assert private.read_bytes() == b"bob's secret"


def test_write_creates_and_replaces_with_etag(runas: RunAs, root: Path) -> None:
    created = as_alice(runas, {"op": "write", "root": str(root), "path": "notes.txt", "size": 3},
                       b"one")  # fmt: skip
    assert created["created"] and (root / "notes.txt").read_bytes() == b"one"
    assert (root / "notes.txt").stat().st_uid == _user("alice").pw_uid
    with pytest.raises(PreconditionRequired):
        as_alice(runas, {"op": "write", "root": str(root), "path": "notes.txt", "size": 3}, b"two")
    replaced = as_alice(runas, {"op": "write", "root": str(root), "path": "notes.txt",
                                "size": 3, "if_match": [created["etag"]]}, b"two")  # fmt: skip
    assert (root / "notes.txt").read_bytes() == b"two" and replaced["etag"] != created["etag"]
    with pytest.raises(PreconditionFailed):
        as_alice(runas, {"op": "write", "root": str(root), "path": "notes.txt", "size": 5,
                         "if_match": [created["etag"]]}, b"three")  # fmt: skip
    with pytest.raises(Conflict):
        as_alice(runas, {"op": "write", "root": str(root), "path": "notes.txt", "size": 1,
                         "if_none_match": True}, b"x")  # fmt: skip
    assert (root / "notes.txt").read_bytes() == b"two"
    assert not [p for p in root.iterdir() if p.name.endswith(".part")]


def test_one_path_protocol_the_absolute_operations_are_gone(runas: RunAs, root: Path) -> None:
    """Every file operation walks from a root: the former absolute ``stat``,
    ``write-file``, ``mkdir`` (without a root) and ``read-file`` are refused."""
    target = str(root / "x.txt")
    for request in (
        {"op": "stat", "path": target},
        {"op": "write-file", "path": target, "size": 1, "mode": 0o600},
        {"op": "read-file", "path": target, "offset": 0, "length": 1},
    ):
        with pytest.raises(Forbidden, match="unknown operation"):
            as_alice(runas, request, b"x")
    with pytest.raises(Forbidden, match="root must be an absolute path"):
        as_alice(runas, {"op": "mkdir", "path": target, "parents": True})
    assert not (root / "x.txt").exists()


def test_the_operations_listed_at_the_top_are_the_ones_performed() -> None:
    assert {"slurm", "terminal", *FILE_OPERATIONS} == OPERATIONS


def test_write_with_mode_replace_parents_and_read_from_an_offset(runas: RunAs, root: Path) -> None:
    """What the portal's own files need (a job script, a session's password file, job
    output): fixed bits, replacing without an etag, missing folders made on the way,
    and reading from an offset; links out of the root are refused as everywhere."""
    job = {"op": "write", "root": str(root), "path": "s/1/job.sh", "size": 3, "mode": 0o700}
    as_alice(runas, {**job, "parents": True}, b"one")
    assert (root / "s/1/job.sh").stat().st_mode & 0o777 == 0o700
    with pytest.raises(PreconditionRequired):  # never replaced unless asked
        as_alice(runas, job, b"two")
    as_alice(runas, {**job, "replace": True, "mode": 0o600}, b"two")
    assert (root / "s/1/job.sh").read_bytes() == b"two"
    assert (root / "s/1/job.sh").stat().st_mode & 0o777 == 0o600
    head, data = read(runas, root, "s/1/job.sh", offset=1, max_length=10)
    assert head["size"] == 3 and head["offset"] == 1 and data == b"wo"
    head, data = read(runas, root, "s/1/job.sh", offset=9, max_length=10)
    assert head["size"] == 3 and data == b""
    os.symlink("/etc", root / "out")
    with pytest.raises(Forbidden, match="outside"):
        as_alice(runas, {**job, "path": "out/x.sh", "parents": True}, b"one")
    with pytest.raises(Forbidden, match="outside"):
        read(runas, root, "out/passwd", offset=0, max_length=10)


def test_mkdir_rename_copy_chmod(runas: RunAs, root: Path) -> None:
    as_alice(runas, {"op": "mkdir", "root": str(root), "path": "a/b/c", "parents": True})
    make(root, "a/b/c/f.txt", b"data")
    (root / "a" / "link").symlink_to("/etc/passwd")
    with pytest.raises(Conflict):
        as_alice(runas, {"op": "mkdir", "root": str(root), "path": "a"})
    copied = as_alice(runas, {"op": "copy", "root": str(root), "path": "a", "to": "a2"})
    assert copied["files"] == 1 and copied["links"] == 1
    assert (root / "a2/b/c/f.txt").read_bytes() == b"data"
    assert os.readlink(root / "a2/link") == "/etc/passwd"  # copied as a link, not followed
    copied_in = as_alice(runas, {"op": "copy", "root": str(root), "path": "a", "to": "a/b/inner"})
    assert copied_in["files"] == 1 and not (root / "a/b/inner/b/inner").exists()
    with pytest.raises(Conflict):
        as_alice(runas, {"op": "copy", "root": str(root), "path": "a", "to": "a2"})
    with pytest.raises(Conflict):
        as_alice(runas, {"op": "rename", "root": str(root), "path": "a", "to": "a2"})
    as_alice(runas, {"op": "rename", "root": str(root), "path": "a2", "to": "a3"})
    assert (root / "a3").is_dir() and not (root / "a2").exists()
    changed = as_alice(runas, {"op": "chmod", "root": str(root), "path": "a3/b/c/f.txt",
                               "mode": 0o640})  # fmt: skip
    assert changed["mode"] == 0o640
    assert not [p for p in root.rglob(".*") if p.name.endswith(".copy")]


def test_trash_and_restore(runas: RunAs, root: Path) -> None:
    home = _user("alice").pw_dir
    make(root, "doc/report.txt", b"v1")
    gone = as_alice(runas, {"op": "delete", "root": str(root), "path": "doc/report.txt",
                            "label": "test"})  # fmt: skip
    assert not (root / "doc/report.txt").exists()
    trash = Path(gone["trash"])
    assert trash in (Path(home) / ".hpcportal-trash", root / ".hpcportal-trash")
    assert (trash / gone["trash_id"]).read_bytes() == b"v1"
    listed = as_alice(runas, {"op": "trash", "roots": [str(root)]})["items"]
    assert any(i["id"] == gone["trash_id"] and i["path"] == "doc/report.txt" for i in listed)
    make(root, "doc/report.txt", b"v2")
    with pytest.raises(Conflict):  # never replaces what is there now
        as_alice(runas, {"op": "restore", "root": str(root), "path": "doc/report.txt"})
    (root / "doc/report.txt").unlink()
    as_alice(runas, {"op": "restore", "root": str(root), "path": "doc/report.txt"})
    assert (root / "doc/report.txt").read_bytes() == b"v1"
    with pytest.raises(Forbidden):
        as_alice(runas, {"op": "delete", "root": str(root), "path": ""})
    as_alice(runas, {"op": "delete", "root": str(root), "path": "doc", "permanent": True})
    assert not (root / "doc").exists()


def test_zip_skips_links_and_keeps_contents(runas: RunAs, root: Path) -> None:
    make(root, "proj/a.txt", b"alpha")
    make(root, "proj/sub/b.txt", b"beta")
    (root / "proj" / "passwd").symlink_to("/etc/passwd")
    stream = runas.run("alice", {"op": "zip", "root": str(root), "path": "proj"})
    header, _, data = stream.stdout.partition(b"\n")
    assert json.loads(header)["name"] == "proj"
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert archive.read("proj/a.txt") == b"alpha" and archive.read("proj/sub/b.txt") == b"beta"
    assert "proj/passwd" not in names
    assert b"root:" not in data
    assert "symbolic link" in archive.read("proj/hpcportal-skipped.txt").decode()


def test_search_by_name_and_content(runas: RunAs, root: Path) -> None:
    make(root, "s/one.py", b"import numpy\n")
    make(root, "s/deep/two.py", b"print('needle here')\n")
    make(root, "s/three.txt", b"needle\n")
    done = runas.run("alice", {"op": "search", "root": str(root), "path": "s", "glob": "*.py"})
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["ok"] and lines[-1]["done"] and not lines[-1]["truncated"]
    assert sorted(item["path"] for item in lines[1:-1]) == ["s/deep/two.py", "s/one.py"]
    done = runas.run("alice", {"op": "search", "root": str(root), "path": "s", "glob": "*",
                               "content": "NEEDLE"})  # fmt: skip
    hits = {item["path"]: item["match"] for item in map(json.loads, done.stdout.splitlines()[1:-1])}
    assert set(hits) == {"s/deep/two.py", "s/three.txt"} and hits["s/three.txt"]["line"] == 1
    done = runas.run("alice", {"op": "search", "root": str(root), "path": "s", "glob": "*",
                               "max_results": 1})  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1])["reason"] == "count"


def test_resumable_upload_steps(runas: RunAs, root: Path) -> None:
    upload = {"op": "upload", "root": str(root), "path": "", "name": "big.bin",
              "upload_id": "0" * 32}  # fmt: skip
    data = os.urandom(100_000)
    as_alice(runas, {**upload, "action": "create"})
    part = root / f".big.bin.{'0' * 32}.part"
    assert part.exists() and not (root / "big.bin").exists()
    first = as_alice(runas, {**upload, "action": "append", "offset": 0, "length": len(data)},
                     data[:40_000])  # fmt: skip
    assert first["offset"] == 40_000 and not first["complete"]
    with part.open("ab") as extra:  # what an interrupted, unrecorded request left behind
        extra.write(b"junk")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ChecksumMismatch):
        as_alice(runas, {**upload, "action": "append", "offset": 40_000, "length": len(data),
                         "checksum": wrong}, data[40_000:50_000])  # fmt: skip
    assert part.stat().st_size == 40_000  # the bad chunk (and the junk) are cut off
    good = hashlib.sha256(data[40_000:]).hexdigest()
    last = as_alice(runas, {**upload, "action": "append", "offset": 40_000, "length": len(data),
                            "checksum": good, "expected": 60_000}, data[40_000:])  # fmt: skip
    assert last["complete"] and last["offset"] == len(data)
    assert (root / "big.bin").read_bytes() == data and not part.exists()
    assert (root / "big.bin").stat().st_uid == _user("alice").pw_uid
    with pytest.raises(Conflict):  # the name exists now
        as_alice(runas, {**upload, "action": "create"})


def test_usage_and_roots(runas: RunAs, root: Path) -> None:
    make(root, "u/a.bin", b"x" * 10_000)
    make(root, "u/sub/b.bin", b"y" * 5_000)
    sizes = as_alice(runas, {"op": "usage", "root": str(root), "path": "u"})
    assert sizes["complete"] and sizes["total"] > 0
    by_name = {e["name"]: e for e in sizes["entries"]}
    assert by_name["sub"]["bytes"] >= 5_000 and by_name["a.bin"]["bytes"] == 10_000
    roots = as_alice(runas, {"op": "roots", "roots": [str(root), "/nonexistent", "/root"],
                             "space": True, "quota": True})  # fmt: skip
    state = {r["root"]: r for r in roots["roots"]}
    assert state[str(root)]["accessible"] and state[str(root)]["total"] > 0
    assert state["/nonexistent"]["exists"] is False
    assert state["/root"]["accessible"] is False
    assert "known" in roots["quota"]
