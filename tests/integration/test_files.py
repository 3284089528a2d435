"""Files as the user, through a portal run as the service account (sudo + helper).

Alice, bob and carol are real Unix users; every file access is the helper running
with their UID, so these tests check what the kernel allows, not portal rules.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.portals import PortalFactory
from tests.integration.service_portal import ServicePortal

API = "/api/v1"
TUS = {"Tus-Resumable": "1.0.0"}
SYSTEM_PYTHON = "/usr/bin/python3"


def as_user(user: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["runuser", "-u", user, "--", *argv],
        capture_output=True, text=True, check=False, timeout=120, cwd="/tmp", **kwargs,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def shared_dir(prefix: str, mode: int = 0o755) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    directory.chmod(mode)
    return directory


@pytest.fixture(scope="module")
def areas() -> Iterator[dict[str, Path]]:
    """A scratch area with a folder for alice only, and a shared sticky folder."""
    scratch = shared_dir("hpcportal-scratch-")
    alice_scratch = scratch / "alice"
    alice_scratch.mkdir(mode=0o700)
    os.chown(alice_scratch, pwd.getpwnam("alice").pw_uid, pwd.getpwnam("alice").pw_gid)
    shared = shared_dir("hpcportal-shared-", 0o1777)
    yield {"scratch": scratch, "shared": shared}
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="module")
def portal(areas: dict[str, Path], make_portal: PortalFactory) -> ServicePortal:
    roots = [
        {"name": "home", "path": "{home}"},
        {"name": "scratch", "path": f"{areas['scratch']}/{{user}}"},
        {"name": "shared", "path": str(areas["shared"])},
    ]
    return make_portal.service(
        {
            "HPCPORTAL_FILE_ROOTS": json.dumps(roots),
            "HPCPORTAL_DISK_ALERT_PATHS": json.dumps(["/tmp"]),
            "HPCPORTAL_DISK_SCRATCH_PROBE": json.dumps(["df", "-P", "-B1", "/tmp"]),
            "HPCPORTAL_DISK_SCRATCH_NODES": json.dumps(["node001", "node002"]),
            "HPCPORTAL_DISK_ALERT_INTERVAL": "3600",
            "HPCPORTAL_FILE_SEARCH_SECONDS": "5",
        }
    )


@pytest.fixture(scope="module")
def wd() -> Iterator[str]:
    """A folder in alice's home for this module (made by alice), removed afterwards."""
    name = f"files-test-{secrets.token_hex(4)}"
    as_user("alice", ["mkdir", "-p", f"/home/alice/{name}"])
    yield name
    shutil.rmtree(f"/home/alice/{name}", ignore_errors=True)


@pytest.fixture(scope="module")
def bob_files() -> Iterator[dict[str, str]]:
    """Bob's private file (0600) and a readable one (0644), both outside alice's roots."""
    marker = secrets.token_hex(8)
    private, readable = "/home/bob/files-test-private.txt", "/home/bob/files-test-readable.txt"
    as_user("bob", ["sh", "-c", f"umask 077; echo BOB-PRIVATE-{marker} > {private}"])
    as_user("bob", ["sh", "-c", f"umask 022; echo BOB-READABLE-{marker} > {readable}"])
    yield {"private": private, "readable": readable, "marker": marker}
    for path in (private, readable):
        Path(path).unlink(missing_ok=True)


def url(root: str, path: str = "") -> str:
    return f"{API}/files/{root}/{path}"


def raw_get(portal: ServicePortal, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A request whose target is sent exactly as written (httpx would normalise it)."""
    parts = urlsplit(portal.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def put_text(
    c: httpx.Client, headers: dict[str, str], path: str, text: str, **extra: str
) -> httpx.Response:
    return c.put(url("home", path), headers={**headers, **extra}, content=text.encode())


# --- roots and paths -------------------------------------------------------------------


def test_roots_are_those_that_exist_for_the_user(
    portal: ServicePortal, alice: dict[str, str], bob: dict[str, str]
) -> None:
    with portal.client() as c:
        mine = c.get(f"{API}/files", headers=alice)
        theirs = c.get(f"{API}/files", headers=bob)
    assert mine.status_code == 200, mine.text
    assert [r["name"] for r in mine.json()] == ["home", "scratch", "shared"]
    assert mine.json()[0]["path"] == "/home/alice"
    assert [r["name"] for r in theirs.json()] == ["home", "shared"]  # no scratch folder for bob
    assert mine.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in mine.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("home/../../../etc/passwd", 422),
        ("home/{wd}/../../bob", 422),
        ("home/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 422),
        ("home/%2E%2E/%2E%2E/etc/passwd", 422),
        ("home//etc/passwd", 422),
        ("home/%2Fetc%2Fpasswd", 422),
        ("home/{wd}/a%00b", 422),
        ("home/%252e%252e%252fetc%252fpasswd", 404),  # decoded once: a literal name
        ("nosuchroot/x", 404),
    ],
)
def test_traversal_is_refused(
    portal: ServicePortal, alice: dict[str, str], wd: str, target: str, expected: int
) -> None:
    for suffix in ("", "?download=1", "?zip=1", "?preview=1"):
        status, body = raw_get(portal, f"{API}/files/{target.format(wd=wd)}{suffix}", alice)
        assert status == expected, body
        assert b"root:" not in body


def test_destinations_are_checked_too(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    with portal.client() as c:
        assert put_text(c, alice, f"{wd}/src.txt", "x").status_code == 201
        for to in ("/etc/evil", "../../bob/evil", f"{wd}/../../../tmp/evil", "a\0b"):
            r = c.post(url("home", f"{wd}/src.txt"), headers=alice, json={"op": "copy", "to": to})
            assert r.status_code == 422, (to, r.text)
        moved = c.post(url("home", f"{wd}/src.txt"), headers=alice,
                       json={"op": "rename", "to": "x", "to_root": "nosuch"})  # fmt: skip
        assert moved.status_code == 404


def test_symlinks_out_of_the_root_are_refused(
    portal: ServicePortal, alice: dict[str, str], wd: str, bob_files: dict[str, str]
) -> None:
    base = f"/home/alice/{wd}/links"
    as_user("alice", ["mkdir", "-p", f"{base}/inside/real"])
    as_user("alice", ["sh", "-c", f"echo in-root > {base}/inside/real/ok.txt"])
    for name, target in [
        ("rootlink", "/root"),
        ("boblink", "/home/bob"),
        ("bobfile", bob_files["private"]),
        ("bobreadable", bob_files["readable"]),
        ("climb", "../../../bob"),
        ("inlink", "inside/real"),
        ("abslink", f"{base}/inside/real/ok.txt"),
    ]:
        as_user("alice", ["ln", "-s", target, f"{base}/{name}"])
    refused = [
        "links/rootlink",
        "links/boblink",
        "links/boblink/files-test-readable.txt",
        "links/bobfile",
        "links/bobreadable",
        "links/climb/files-test-readable.txt",
    ]
    with portal.client() as c:
        for path in refused:
            for params in ({}, {"download": "1"}, {"zip": "1"}, {"preview": "1"}):
                r = c.get(url("home", f"{wd}/{path}"), headers=alice, params=params)
                assert r.status_code == 403, (path, params, r.text)
                assert "outside" in r.json()["detail"]
                assert bob_files["marker"].encode() not in r.content
        ok = c.get(url("home", f"{wd}/links/inlink/ok.txt"), headers=alice, params={"download": 1})
        assert ok.status_code == 200 and ok.content == b"in-root\n"
        ok = c.get(url("home", f"{wd}/links/abslink"), headers=alice, params={"download": 1})
        assert ok.status_code == 200 and ok.content == b"in-root\n"
        listing = c.get(url("home", f"{wd}/links"), headers=alice).json()
        kinds = {e["name"]: (e["type"], e["target"]) for e in listing["entries"]}
        assert kinds["rootlink"] == ("symlink", "/root")  # shown, never followed
        archive = c.get(url("home", f"{wd}/links"), headers=alice, params={"zip": 1})
    assert archive.status_code == 200
    members = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert "links/inside/real/ok.txt" in members
    assert not [m for m in members if "bob" in m or "rootlink" in m]


RACE_SWAPPER = r"""
import ctypes, os, sys, time
base, secret, readable, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
end, swaps = time.time() + seconds, 0
while time.time() < end:
    for target in (secret, readable):
        os.symlink(target, f"{base}/.tmp-link")
        os.replace(f"{base}/.tmp-link", f"{base}/swap.txt")
        with open(f"{base}/.tmp-file", "w") as handle:
            handle.write("alice-content\n")
        os.replace(f"{base}/.tmp-file", f"{base}/swap.txt")
        # A folder and a link to bob's home trade places atomically.
        libc.renameat2(AT_FDCWD, f"{base}/swapdir".encode(), AT_FDCWD,
                       f"{base}/.otherdir".encode(), RENAME_EXCHANGE)
        swaps += 1
print(swaps)
"""


def test_symlink_swapped_in_during_zip_never_leaks(
    portal: ServicePortal, alice: dict[str, str], wd: str, bob_files: dict[str, str]
) -> None:
    base = f"/home/alice/{wd}/race"
    as_user("alice", ["mkdir", "-p", f"{base}/swapdir"])
    as_user("alice", ["sh", "-c", f"echo alice-content > {base}/swap.txt"])
    as_user("alice", ["sh", "-c", f"echo alice-dir > {base}/swapdir/inner.txt"])
    as_user("alice", ["ln", "-s", "/home/bob", f"{base}/.otherdir"])
    for i in range(20):
        as_user("alice", ["sh", "-c", f"echo filler-{i} > {base}/filler-{i:02d}.txt"])
    marker = bob_files["marker"].encode()
    swapper = subprocess.Popen(
        ["runuser", "-u", "alice", "--", SYSTEM_PYTHON, "-c", RACE_SWAPPER, base,
         bob_files["private"], bob_files["readable"], "40"],
        stdout=subprocess.PIPE, text=True, cwd="/tmp",
    )  # fmt: skip
    seen_file = seen_skipped = archives = 0
    try:
        with portal.client() as c:
            deadline = time.monotonic() + 35
            while time.monotonic() < deadline and archives < 150:
                r = c.get(url("home", f"{wd}/race"), headers=alice, params={"zip": 1})
                assert r.status_code == 200, r.text
                archive = zipfile.ZipFile(io.BytesIO(r.content))
                assert archive.testzip() is None
                for name in archive.namelist():
                    content = archive.read(name)
                    assert marker not in content, f"bob's file leaked as {name}"
                    assert b"BOB-" not in content
                    if name == "race/swap.txt":
                        seen_file += 1
                    if name == "race/hpcportal-skipped.txt" and b"swap.txt" in content:
                        seen_skipped += 1
                assert not [n for n in archive.namelist() if "files-test-" in n]
                archives += 1
    finally:
        swapper.terminate()
        out, _ = swapper.communicate(timeout=30)
    assert archives >= 20
    assert seen_file + seen_skipped >= archives - 5  # the race was really run
    assert seen_file > 0 and seen_skipped > 0, (seen_file, seen_skipped, out)


# --- the kernel decides ------------------------------------------------------------------


def test_alice_cannot_read_what_bob_made_private(
    portal: ServicePortal, alice: dict[str, str], bob: dict[str, str], areas: dict[str, Path]
) -> None:
    shared = areas["shared"]
    as_user("bob", ["sh", "-c", f"umask 077; echo bob-only > {shared}/bob-private.txt"])
    with portal.client() as c:
        listing = c.get(url("shared"), headers=alice).json()
        owners = {e["name"]: e["owner"] for e in listing["entries"]}
        assert owners["bob-private.txt"] == "bob"
        for params in ({"download": "1"}, {"preview": "1"}):
            r = c.get(url("shared", "bob-private.txt"), headers=alice, params=params)
            assert r.status_code == 403, r.text
            assert r.json()["detail"].startswith("The system refused: permission denied")
        gone = c.delete(url("shared", "bob-private.txt"), headers=alice, params={"permanent": 1})
        assert gone.status_code == 403  # sticky folder: the kernel says no
        mine = c.get(url("shared", "bob-private.txt"), headers=bob, params={"download": 1})
    assert mine.status_code == 200 and mine.content == b"bob-only\n"
    assert (shared / "bob-private.txt").exists()


def test_files_alice_creates_belong_to_alice(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    uid = pwd.getpwnam("alice").pw_uid
    with portal.client() as c:
        made = c.post(url("home", f"{wd}/made"), headers=alice, json={"op": "mkdir"})
        assert made.status_code == 201, made.text
        assert put_text(c, alice, f"{wd}/made/note.txt", "hello").status_code == 201
        copied = c.post(url("home", f"{wd}/made/note.txt"), headers=alice,
                        json={"op": "copy", "to": f"{wd}/made/copy.txt"})  # fmt: skip
        assert copied.status_code == 200, copied.text
        to_scratch = {"op": "copy", "to_root": "scratch", "to": "note.txt"}
        into_scratch = c.post(url("home", f"{wd}/made/note.txt"), headers=alice, json=to_scratch)
        assert into_scratch.status_code == 200, into_scratch.text
    for path in ("made", "made/note.txt", "made/copy.txt"):
        assert Path(f"/home/alice/{wd}/{path}").stat().st_uid == uid
    assert Path(f"/home/alice/{wd}/made/note.txt").stat().st_mode & 0o777 == 0o644


# --- reading -----------------------------------------------------------------------------


def test_listing_metadata_and_pages(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    with portal.client() as c:
        c.post(url("home", f"{wd}/page"), headers=alice, json={"op": "mkdir"})
        for i in range(5):
            put_text(c, alice, f"{wd}/page/f{i}.txt", "x" * i)
        first = c.get(url("home", f"{wd}/page"), headers=alice, params={"limit": 2})
        second = c.get(url("home", f"{wd}/page"), headers=alice, params={"limit": 2, "offset": 2})
        by_size = c.get(url("home", f"{wd}/page"), headers=alice, params={"sort": "-size"})
        info = c.get(url("home", f"{wd}/page/f3.txt"), headers=alice)
        bad = c.get(url("home", f"{wd}/page"), headers=alice, params={"sort": "owner"})
        unknown = c.get(url("home", f"{wd}/page"), headers=alice, params={"srot": "name"})
    assert first.json()["total"] == 5
    assert [e["name"] for e in first.json()["entries"]] == ["f0.txt", "f1.txt"]
    assert [e["name"] for e in second.json()["entries"]] == ["f2.txt", "f3.txt"]
    assert by_size.json()["entries"][0]["name"] == "f4.txt"
    assert info.json()["type"] == "file" and info.json()["size"] == 3
    assert info.headers["etag"] == f'"{info.json()["etag"]}"'
    assert bad.status_code == 422 and unknown.status_code == 422


def test_range_downloads(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    data = os.urandom(1 << 20)
    path = Path(f"/home/alice/{wd}/range.bin")
    path.write_bytes(data)
    os.chown(path, pwd.getpwnam("alice").pw_uid, pwd.getpwnam("alice").pw_gid)
    target, size = url("home", f"{wd}/range.bin"), len(data)
    with portal.client() as c:
        whole = c.get(target, headers=alice, params={"download": 1})
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(size)
        assert whole.headers["content-disposition"].startswith('attachment; filename="range.bin"')
        etag = whole.headers["etag"]
        for header, start, end in [
            ("bytes=100-199", 100, 199),
            ("bytes=-10", size - 10, size - 1),
            (f"bytes={size - 5}-", size - 5, size - 1),
            (f"bytes=0-{size * 2}", 0, size - 1),
        ]:
            r = c.get(target, headers={**alice, "Range": header}, params={"download": 1})
            assert r.status_code == 206, (header, r.text)
            assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
            assert r.content == data[start : end + 1]
        beyond = c.get(target, headers={**alice, "Range": f"bytes={size}-"}, params={"download": 1})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
        several = c.get(target, headers={**alice, "Range": "bytes=0-1,5-6"}, params={"download": 1})
        assert several.status_code == 200 and len(several.content) == size
        fresh = c.get(target, headers={**alice, "Range": "bytes=0-9", "If-Range": etag},
                      params={"download": 1})  # fmt: skip
        stale = c.get(target, headers={**alice, "Range": "bytes=0-9", "If-Range": '"old"'},
                      params={"download": 1})  # fmt: skip
    assert fresh.status_code == 206 and stale.status_code == 200


def test_previews(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    files = {
        "job.py": b"import os\nprint(os.getcwd())\n",
        "table.csv": b"name,value\na,1\nb,2\n",
        "pixel.png": png,
        "paper.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n",
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "page.html": b"<script>alert(1)</script>",
        "blob.dat": b"\x00\x01\x02binary",
        "README": b"plain words\n",
    }
    folder = Path(f"/home/alice/{wd}/preview")
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    alice_ids = pwd.getpwnam("alice")
    for p in [folder, *folder.iterdir()]:
        os.chown(p, alice_ids.pw_uid, alice_ids.pw_gid)

    def preview(name: str) -> httpx.Response:
        with portal.client() as c:
            r = c.get(url("home", f"{wd}/preview/{name}"), headers=alice, params={"preview": 1})
        assert r.status_code == 200, r.text
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        return r

    code = preview("job.py").json()
    assert code["kind"] == "text" and code["language"] == "python" and "getcwd" in code["content"]
    table = preview("table.csv").json()
    assert table["kind"] == "table" and table["columns"] == ["name", "value"]
    assert table["rows"] == [["a", "1"], ["b", "2"]]
    assert preview("README").json()["kind"] == "text"
    image = preview("pixel.png")
    assert image.headers["content-type"] == "image/png" and image.content == png
    assert image.headers["content-disposition"].startswith("inline")
    pdf = preview("paper.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline")
    for name in ("drawing.svg", "page.html", "blob.dat"):
        r = preview(name)
        assert r.headers["content-disposition"].startswith("attachment"), name
        assert r.headers["content-type"] == "application/octet-stream", name
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.content == files[name]


def test_search_streams_json_lines(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    with portal.client() as c:
        c.post(url("home", f"{wd}/find/deep"), headers=alice, json={"op": "mkdir", "parents": True})
        put_text(c, alice, f"{wd}/find/one.py", "import numpy\n")
        put_text(c, alice, f"{wd}/find/deep/two.py", "x = 'needle'\n")
        put_text(c, alice, f"{wd}/find/three.txt", "needle\n")
        r = c.get(url("home", f"{wd}/find"), headers=alice, params={"search": "*.py"})
        content = c.get(url("home", f"{wd}/find"), headers=alice,
                        params={"search": "*", "content": "needle"})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert sorted(i["path"] for i in lines[:-1]) == [f"{wd}/find/deep/two.py", f"{wd}/find/one.py"]
    assert lines[-1]["done"] and lines[-1]["truncated"] is False
    hits = [json.loads(line) for line in content.text.splitlines()][:-1]
    assert {h["name"] for h in hits} == {"two.py", "three.txt"}
    assert all(h["match"]["line"] == 1 for h in hits)


def test_usage(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    with portal.client() as c:
        r = c.get(f"{API}/files-usage", headers=alice, params={"root": "home", "path": wd})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [root["name"] for root in body["roots"]] == ["home", "scratch", "shared"]
    assert body["roots"][0]["space"]["total"] > 0
    assert body["quota_known"] is False and "unknown" in body["quota_note"]
    assert body["folder"]["complete"] and body["folder"]["entries"]


def test_folder_sizes_are_reused_until_refresh(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    params = {"root": "home", "path": f"{wd}/sizes"}
    with portal.client() as c:
        c.post(url("home", f"{wd}/sizes/sub"), headers=alice, json={"op": "mkdir", "parents": True})
        put_text(c, alice, f"{wd}/sizes/sub/a.txt", "x" * 1000)
        first = c.get(f"{API}/files-usage", headers=alice, params=params).json()["folder"]
        put_text(c, alice, f"{wd}/sizes/sub/b.txt", "y" * 5000)
        again = c.get(f"{API}/files-usage", headers=alice, params=params).json()["folder"]
        fresh = c.get(
            f"{API}/files-usage", headers=alice, params={**params, "refresh": "true"}
        ).json()["folder"]
    size = {e["name"]: e["bytes"] for e in first["entries"]}["sub"]
    assert again == first  # the same computation, not a second walk
    assert {e["name"]: e["bytes"] for e in fresh["entries"]}["sub"] >= size + 5000
    assert fresh["computed_at"] > first["computed_at"]


# --- changing ----------------------------------------------------------------------------


def test_etag_conflict(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    path = f"{wd}/edit.txt"
    with portal.client() as c:
        created = put_text(c, alice, path, "v1\n")
        assert created.status_code == 201, created.text
        etag = c.get(url("home", path), headers=alice).headers["etag"]
        assert etag == created.headers["etag"]
        first = put_text(c, alice, path, "v2 by tab one\n", **{"If-Match": etag})
        assert first.status_code == 200, first.text
        second = put_text(c, alice, path, "v2 by tab two\n", **{"If-Match": etag})
        assert second.status_code == 412
        blind = put_text(c, alice, path, "no etag\n")
        assert blind.status_code == 428
        create_only = put_text(c, alice, path, "new\n", **{"If-None-Match": "*"})
        assert create_only.status_code == 409
        text = c.get(url("home", path), headers=alice, params={"download": 1}).text
        big = c.put(url("home", f"{wd}/big.txt"), headers=alice, content=b"x" * (3 << 20))
        binary = c.put(url("home", f"{wd}/bin.txt"), headers=alice, content=b"\xff\xfe\x00")
    assert text == "v2 by tab one\n"
    assert big.status_code == 413 and binary.status_code == 422


def test_trash_and_restore(portal: ServicePortal, alice: dict[str, str], wd: str) -> None:
    path = f"{wd}/precious.txt"
    with portal.client() as c:
        put_text(c, alice, path, "keep me\n")
        gone = c.delete(url("home", path), headers=alice)
        assert gone.status_code == 200, gone.text
        trash_id = gone.json()["trash_id"]
        assert c.get(url("home", path), headers=alice).status_code == 404
        trash = c.get(f"{API}/files-trash", headers=alice).json()
        assert any(t["id"] == trash_id and t["path"] == path and t["root"] == "home" for t in trash)
        put_text(c, alice, path, "a new one\n")
        clash = c.post(url("home", path), headers=alice, json={"op": "restore"})
        assert clash.status_code == 409
        c.delete(url("home", path), headers=alice, params={"permanent": 1})
        back = c.post(url("home", path), headers=alice,
                      json={"op": "restore", "trash_id": trash_id})  # fmt: skip
        assert back.status_code == 200, back.text
        text = c.get(url("home", path), headers=alice, params={"download": 1}).text
        assert text == "keep me\n"
        rename = c.post(url("home", path), headers=alice,
                        json={"op": "rename", "to": f"{wd}/renamed.txt"})  # fmt: skip
        mode = c.post(url("home", f"{wd}/renamed.txt"), headers=alice,
                      json={"op": "chmod", "mode": "600"})  # fmt: skip
        root = c.delete(url("home", ""), headers=alice)
    assert rename.status_code == 200 and mode.json()["mode"] == 0o600
    assert Path(f"/home/alice/{wd}/renamed.txt").stat().st_mode & 0o777 == 0o600
    assert root.status_code == 409


def test_file_changes_are_audited(
    portal: ServicePortal, alice: dict[str, str], carol: dict[str, str], wd: str
) -> None:
    with portal.client() as c:
        put_text(c, alice, f"{wd}/audited.txt", "x")
        entries = c.get(f"{API}/audit", headers=carol, params={"action": "file.", "user": "alice"})
    assert entries.status_code == 200, entries.text
    actions = {(e["action"], e["target"]) for e in entries.json()["items"]}
    assert ("file.write", f"home:{wd}/audited.txt") in actions


# --- resumable uploads -------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create_upload(
    c: httpx.Client, headers: dict[str, str], name: str, folder: str, length: int
) -> str:
    metadata = f"filename {b64(name)},root {b64('home')},folder {b64(folder)}"
    r = c.post(f"{API}/uploads/tus", headers={**headers, **TUS, "Upload-Length": str(length),
                                              "Upload-Metadata": metadata})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.headers["tus-resumable"] == "1.0.0"
    return r.headers["location"]


def patch(
    c: httpx.Client, headers: dict[str, str], location: str, offset: int, body: Any, **extra: str
) -> httpx.Response:
    return c.patch(
        location,
        headers={**headers, **TUS, "Upload-Offset": str(offset),
                 "Content-Type": "application/offset+octet-stream", **extra},
        content=body,
    )  # fmt: skip


def head_offset(c: httpx.Client, headers: dict[str, str], location: str) -> int:
    r = c.head(location, headers={**headers, **TUS})
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


def test_tus_options_checksum_and_termination(
    portal: ServicePortal, alice: dict[str, str], bob: dict[str, str], wd: str
) -> None:
    with portal.client() as c:
        options = c.options(f"{API}/uploads/tus")
        assert options.status_code == 204
        assert "checksum" in options.headers["tus-extension"]
        assert options.headers["tus-checksum-algorithm"] == "sha256"
        location = create_upload(c, alice, "chk.bin", wd, 10)
        bad = patch(c, alice, location, 0, b"0123456789",
                    **{"Upload-Checksum": "sha256 " + b64("x" * 32)})  # fmt: skip
        assert bad.status_code == 460 and head_offset(c, alice, location) == 0
        wrong_offset = patch(c, alice, location, 5, b"01234")
        assert wrong_offset.status_code == 409
        no_version = c.head(location, headers=alice)
        assert no_version.status_code == 412
        assert c.head(location, headers={**bob, **TUS}).status_code == 404  # not bob's
        part = [p for p in Path(f"/home/alice/{wd}").iterdir() if p.name.startswith(".chk.bin.")]
        assert len(part) == 1
        gone = c.delete(location, headers={**alice, **TUS})
        assert gone.status_code == 204
        assert not part[0].exists()
        assert c.head(location, headers={**alice, **TUS}).status_code == 404
        metadata = f"filename {b64('edit.txt')},folder {b64(wd)}"
        headers = {**alice, **TUS, "Upload-Length": "1", "Upload-Metadata": metadata}
        exists = c.post(f"{API}/uploads/tus", headers=headers)
        assert exists.status_code == 409  # never replaces a file


def create_with_body(
    c: httpx.Client,
    headers: dict[str, str],
    name: str,
    folder: str,
    length: int,
    body: bytes,
    **extra: str,
) -> httpx.Response:
    """tus creation-with-upload: the POST that creates the upload carries its first bytes."""
    metadata = f"filename {b64(name)},root {b64('home')},folder {b64(folder)}"
    return c.post(
        f"{API}/uploads/tus", content=body,
        headers={**headers, **TUS, "Upload-Length": str(length), "Upload-Metadata": metadata,
                 "Content-Type": "application/offset+octet-stream", **extra},
    )  # fmt: skip


def upload_runs(portal: ServicePortal) -> float:
    """How often the portal ran the helper's upload operation so far."""
    with portal.client() as c:
        text = c.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('hpcportal_runas_seconds_count{op="upload"}')
    )


def test_creation_with_upload_writes_a_small_file_in_one_request(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    """A small file is created, written, fsynced and linked by one request and one run
    of the helper; a first chunk is resumed with PATCH; a bad checksum, a body past
    Upload-Length or a name that exists leave neither a partial file nor an upload."""
    folder = Path(f"/home/alice/{wd}")
    with portal.client() as c:
        options = c.options(f"{API}/uploads/tus")
        assert "creation-with-upload" in options.headers["tus-extension"].split(",")
        before = upload_runs(portal)
        data = os.urandom(3000)
        r = create_with_body(c, alice, "one-shot.bin", wd, len(data), data)
        assert r.status_code == 201, r.text
        assert int(r.headers["upload-offset"]) == len(data)
        assert upload_runs(portal) - before == 1  # create and write: one helper run
        assert (folder / "one-shot.bin").read_bytes() == data
        assert (folder / "one-shot.bin").stat().st_uid == pwd.getpwnam("alice").pw_uid
        assert patch(c, alice, r.headers["location"], len(data), b"x").status_code == 409
        # A first chunk, then the rest with PATCH.
        first = create_with_body(c, alice, "two-part.bin", wd, len(data), data[:1000])
        assert first.status_code == 201 and first.headers["upload-offset"] == "1000"
        assert not (folder / "two-part.bin").exists()
        rest = patch(c, alice, first.headers["location"], 1000, data[1000:])
        assert rest.status_code == 204 and (folder / "two-part.bin").read_bytes() == data
        # Refused bodies leave nothing behind.
        wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
        bad = create_with_body(c, alice, "bad-sum.bin", wd, 5, b"12345",
                               **{"Upload-Checksum": wrong})  # fmt: skip
        assert bad.status_code == 460, bad.text
        past = create_with_body(c, alice, "too-long.bin", wd, 3, b"12345")
        assert past.status_code == 413, past.text
        exists = create_with_body(c, alice, "one-shot.bin", wd, 2, b"ab")
        assert exists.status_code == 409, exists.text
        assert (folder / "one-shot.bin").read_bytes() == data  # never replaced
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and ".part" in p.name]
    assert not leftovers, leftovers


def test_upload_cut_at_half_resumes_with_matching_checksum(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    data = os.urandom(8 << 20)
    name, size = "resumed.bin", len(data)
    with portal.client() as c:
        location = create_upload(c, alice, name, wd, size)
    parts = urlsplit(portal.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: {alice['Authorization']}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {size}\r\n\r\n"
            ).encode()
        )
        sock.sendall(data[: size // 2])
        time.sleep(1.0)
    visible = [p.name for p in Path(f"/home/alice/{wd}").iterdir() if not p.name.startswith(".")]
    assert name not in visible  # the cut upload left nothing under its name
    with portal.client() as c:
        deadline = time.monotonic() + 30
        while True:
            offset = head_offset(c, alice, location)
            r = patch(c, alice, location, offset, data[offset:],
                      **{"Upload-Checksum": "sha256 " + base64.b64encode(
                          hashlib.sha256(data[offset:]).digest()).decode()})  # fmt: skip
            if r.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the cut request is still being wound up
        assert r.status_code == 204, r.text
        assert 0 < offset <= size // 2, offset  # what arrived before the cut was kept
        assert int(r.headers["upload-offset"]) == size
        done = c.get(url("home", f"{wd}/{name}"), headers=alice, params={"download": 1})
    assert hashlib.sha256(done.content).hexdigest() == hashlib.sha256(data).hexdigest()
    final = Path(f"/home/alice/{wd}/{name}")
    assert final.stat().st_uid == pwd.getpwnam("alice").pw_uid
    assert not [p for p in final.parent.iterdir() if p.name.startswith(f".{name}.")]


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_upload_and_download_in_constant_memory(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    size, block = 256 << 20, os.urandom(1 << 20)
    pid = portal.pid()
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            yield chunk

    with httpx.Client(base_url=portal.url, timeout=300) as c:
        head_offset(c, alice, create_upload(c, alice, "warm.bin", wd, 1 << 20))
        before = peak_rss(pid)
        location = create_upload(c, alice, "large.bin", wd, size)
        r = patch(c, alice, location, 0, body(), **{"Content-Length": str(size)})
        assert r.status_code == 204, r.text
        downloaded = hashlib.sha256()
        with c.stream("GET", url("home", f"{wd}/large.bin"), headers=alice,
                      params={"download": 1}) as stream:  # fmt: skip
            for chunk in stream.iter_bytes():
                downloaded.update(chunk)
        with c.stream("GET", url("home", wd), headers=alice, params={"zip": 1}) as stream:
            zipped = sum(len(chunk) for chunk in stream.iter_bytes())
    after = peak_rss(pid)
    assert downloaded.hexdigest() == digest.hexdigest()
    assert zipped > 1 << 20
    assert after - before < 64 << 20, f"the portal grew by {(after - before) >> 20} MiB"


def helpers_of(user: str) -> list[int]:
    """Run-as helpers running as ``user`` (the installed helper, started by sudo)."""
    uid = pwd.getpwnam(user).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or entry.stat().st_uid != uid:
                continue
            if b"hpcportal-runas" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_download_cut_short_ends_its_helper(
    portal: ServicePortal, alice: dict[str, str], wd: str
) -> None:
    """A client that hangs up mid-stream: the helper streaming to it is ended, not left
    blocked on its pipe. (Only this request's helper is watched: other tests may run
    helpers as alice at the same time.)"""
    with httpx.Client(base_url=portal.url, timeout=60) as c:
        for params in ({"download": "1"}, {"zip": "1"}):
            path = f"{wd}/large.bin" if "download" in params else wd
            before = set(helpers_of("alice"))
            with c.stream("GET", url("home", path), headers=alice, params=params) as r:
                assert r.status_code == 200
                chunks = r.iter_bytes(1 << 20)  # kept: dropping it would hang up at once
                next(chunks)  # a little, then hang up
                mine = set(helpers_of("alice")) - before
                assert mine, f"no helper is streaming {params}"
            deadline = time.monotonic() + 10
            while mine & set(helpers_of("alice")) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not mine & set(helpers_of("alice")), params


# --- disk alerts -------------------------------------------------------------------------


def test_disk_alerts(portal: ServicePortal, alice: dict[str, str], carol: dict[str, str]) -> None:
    low = {"default": {"warning_percent": 0.001, "critical_percent": 0.002}}
    high = {"default": {"warning_percent": 99.98, "critical_percent": 99.99}}
    normal = {"default": {"warning_percent": 75, "critical_percent": 90}}
    with portal.client() as c:
        assert c.put(f"{API}/alerts/disk/thresholds", headers=alice, json=low).status_code == 403
        assert c.post(f"{API}/alerts/disk/check", headers=alice).status_code == 403
        bad = c.put(f"{API}/alerts/disk/thresholds", headers=carol,
                    json={"default": {"warning_percent": 90, "critical_percent": 80}})  # fmt: skip
        assert bad.status_code == 422
        assert c.put(f"{API}/alerts/disk/thresholds", headers=carol, json=low).status_code == 200
        checked = c.post(f"{API}/alerts/disk/check", headers=carol)
        assert checked.status_code == 200, checked.text
        alerts = {a["target"]: a for a in checked.json()["alerts"]}
        assert set(alerts) == {"path:/tmp", "node:node001", "node:node002"}
        assert all(a["level"] == "critical" and a["active_since"] for a in alerts.values())
        seen = c.get(f"{API}/alerts/disk", headers=alice).json()
        assert len(seen["alerts"]) == 3 and seen["watching"]
        assert c.put(f"{API}/alerts/disk/thresholds", headers=carol, json=high).status_code == 200
        cleared = c.get(f"{API}/alerts/disk", headers=alice).json()
        assert cleared["alerts"] == []
        assert all(t["cleared_at"] for t in cleared["targets"])
        assert c.put(f"{API}/alerts/disk/thresholds", headers=carol, json=normal).status_code == 200
