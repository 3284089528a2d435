"""Uploads that cannot fill a disk: free space checked before accepting, partial files
removed when the disk fills mid-write, chunked bodies cut off at the limit.

The user's area is a real, small file system: a 32 MiB tmpfs mounted for this module
and owned by alice, so "full" is the kernel's ENOSPC and the free space the helper
measures (``statvfs`` as alice) is real. The portal runs as the service account
through sudo, as in production, with its own empty ``TMPDIR`` so the tests can see
that nothing is spooled on the portal's host.

Quotas: this kernel has no quota support (``CONFIG_QUOTA`` is off: neither ext4 nor
XFS mounts with quotas), so no file system here can answer EDQUOT and the ``quota``
command reports nothing. The quota half of the room check and the EDQUOT half of the
write path share their code with the free-space and ENOSPC halves tested here; the
quota arithmetic is checked on recorded ``quota -w -p`` output in
``tests/unit/test_upload_room.py``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hpcportal.runas.install import ensure_service_account
from tests.integration.portals import PortalFactory
from tests.integration.service_portal import SERVICE_ACCOUNT, ServicePortal

API = "/api/v1"
TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024
FS_SIZE = 32 * MiB
MAX_FILE = 8 * MiB  # upload_max_bytes
MAX_FILES = 2


def as_alice(argv: list[str]) -> None:
    done = subprocess.run(
        ["runuser", "-u", "alice", "--", *argv], capture_output=True, text=True, check=False,
        timeout=60, cwd="/tmp",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def small_fs() -> Iterator[Path]:
    """A 32 MiB tmpfs owned by alice (mode 0700), unmounted afterwards."""
    alice = pwd.getpwnam("alice")
    with mounted_tmpfs("hpcportal-smallfs-", FS_SIZE, alice.pw_uid, alice.pw_gid) as point:
        yield point


@pytest.fixture(scope="module")
def portal_tmp() -> Iterator[Path]:
    """The portal's TMPDIR, a file system of its own: whatever the portal spools lands
    here, even unnamed (``O_TMPFILE``) files a listing would not show, and the space it
    takes is read with ``statvfs``."""
    ensure_service_account(SERVICE_ACCOUNT)
    uid, gid = _ids(SERVICE_ACCOUNT)
    with mounted_tmpfs("hpcportal-portal-tmp-", 128 * MiB, uid, gid) as point:
        yield point


@contextmanager
def mounted_tmpfs(prefix: str, size: int, uid: int, gid: int) -> Iterator[Path]:
    point = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    point.chmod(0o755)
    options = f"size={size},mode=0700,uid={uid},gid={gid}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "hpcportal-test", str(point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
        point.rmdir()


def used_bytes(point: Path) -> int:
    vfs = os.statvfs(point)
    return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize


@pytest.fixture(scope="module")
def portal(small_fs: Path, portal_tmp: Path, make_portal: PortalFactory) -> ServicePortal:
    return make_portal.service(
        {
            "HPCPORTAL_FILE_ROOTS": json.dumps([{"name": "small", "path": str(small_fs)}]),
            "HPCPORTAL_UPLOAD_ROOT": f"{small_fs}/uploads",
            "HPCPORTAL_UPLOAD_MAX_BYTES": str(MAX_FILE),
            "HPCPORTAL_UPLOAD_MAX_FILES": str(MAX_FILES),
            "TMPDIR": str(portal_tmp),
        }
    )


def _ids(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def clean(small_fs: Path) -> Iterator[Path]:
    """Each test starts and ends with an empty file system."""
    _empty(small_fs)
    yield small_fs
    _empty(small_fs)


def _empty(point: Path) -> None:
    for entry in point.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def free_bytes(point: Path) -> int:
    """What alice may still write there (``f_bavail``: tmpfs reserves nothing for root)."""
    vfs = os.statvfs(point)
    return vfs.f_bavail * vfs.f_frsize


def fill(point: Path, leave: int) -> None:
    """Make alice's file ``filler`` take all free space but ``leave`` bytes."""
    size = free_bytes(point) - leave
    as_alice(["fallocate", "-l", str(size), str(point / "filler")])


def everything(point: Path) -> dict[str, int]:
    """Every file under ``point`` (hidden ones too) with its size."""
    return {
        str(Path(d, name).relative_to(point)): Path(d, name).stat().st_size
        for d, _, names in os.walk(point)
        for name in names
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tus_create(c: httpx.Client, alice: dict[str, str], name: str, length: int) -> httpx.Response:
    return c.post(
        f"{API}/uploads/tus",
        headers={**alice, **TUS, "Upload-Length": str(length),
                 "Upload-Metadata": f"filename {b64(name)},root {b64('small')}"},
    )  # fmt: skip


@dataclass
class Sent:
    """What a raw request managed to send, and the answer it got."""

    sent: int = 0
    status: int = 0
    body: bytes = b""
    error: str | None = None
    samples: list[int] = field(default_factory=list)


def raw_request(
    portal: ServicePortal,
    method: str,
    target: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    *,
    chunked: bool = True,
) -> Sent:
    """Send the body chunk by chunk (HTTP chunked encoding unless ``chunked`` is off),
    counting the bytes the socket accepted; stop sending when the server stops taking
    them or has answered, then read the answer. The client's socket buffer is kept
    small so what was "sent" is close to what the server read."""
    parts = urlsplit(portal.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    result = Sent()
    conn.putrequest(method, target, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.sock.settimeout(5)
    try:
        for chunk in chunks:
            if select.select([conn.sock], [], [], 0)[0]:
                break  # the server answered (or closed) before the body ended
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            conn.sock.sendall(data)
            result.sent += len(chunk)
        else:
            if chunked:
                conn.sock.sendall(b"0\r\n\r\n")
    except OSError as exc:  # refused mid-body: reset, or the server stopped reading
        result.error = repr(exc)
    conn.sock.settimeout(30)
    try:
        response = conn.getresponse()
        result.status, result.body = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        result.error = f"{result.error} / no answer: {exc!r}"
    finally:
        conn.close()
    return result


def multipart(name: str, size: int, boundary: str = "hpcportal-test-boundary") -> Iterator[bytes]:
    """A multipart body with one file ``name`` of ``size`` bytes, in 64 KiB pieces."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    left = size
    while left > 0:
        piece = min(left, 64 * 1024)
        yield b"u" * piece
        left -= piece
    yield f"\r\n--{boundary}--\r\n".encode()


MULTIPART = {"Content-Type": "multipart/form-data; boundary=hpcportal-test-boundary"}


# --- tus -------------------------------------------------------------------------------


def test_tus_larger_than_the_free_space_is_refused_at_creation(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    free = free_bytes(clean)
    with portal.client() as c:
        too_big = tus_create(c, alice, "huge.bin", free + MiB)
        first = tus_create(c, alice, "first.bin", free // 2 + MiB)
        # The first one's remaining bytes are counted: two cannot claim the same space.
        second = tus_create(c, alice, "second.bin", free // 2 + MiB)
        assert first.status_code == 201, first.text
        gone = c.delete(first.headers["location"], headers={**alice, **TUS})
    assert too_big.status_code == 507, too_big.text
    detail = too_big.json()["detail"]
    assert f"{free + MiB} bytes" in detail and f"{free} bytes" in detail, detail
    assert too_big.headers["tus-resumable"] == "1.0.0"
    assert second.status_code == 507 and "still to come" in second.json()["detail"]
    assert gone.status_code == 204
    assert everything(clean) == {}  # not even an empty partial file


def test_tus_creation_with_upload_is_refused_whole_when_it_cannot_fit(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    """The creating POST with a body (creation-with-upload) checks the room for the whole
    file before writing a byte: refused with 507, nothing written, no upload left."""
    free = free_bytes(clean)
    metadata = f"filename {b64('huge.bin')},root {b64('small')}"
    headers = {**alice, **TUS, "Upload-Length": str(free + MiB), "Upload-Metadata": metadata,
               "Content-Type": "application/offset+octet-stream"}  # fmt: skip
    answer = raw_request(portal, "POST", f"{API}/uploads/tus", headers, iter([b"h" * MiB]))
    assert answer.status == 507, answer
    assert f"{free + MiB} bytes" in json.loads(answer.body)["detail"]
    assert everything(clean) == {}  # not even an empty partial file
    with portal.client() as c:
        fits = tus_create(c, alice, "fits.bin", MiB)  # the refused one reserves nothing
        assert fits.status_code == 201, fits.text
        assert c.delete(fits.headers["location"], headers={**alice, **TUS}).status_code == 204


def test_tus_disk_full_mid_write_removes_the_partial_file(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    length = 12 * MiB
    with portal.client() as c:
        created = tus_create(c, alice, "big.bin", length)
        assert created.status_code == 201, created.text
        location = urlsplit(created.headers["location"]).path
        part = next(p for p in clean.iterdir() if p.name.endswith(".part"))

        def body() -> Iterator[bytes]:
            yield b"t" * MiB
            deadline = time.monotonic() + 30
            while part.stat().st_size < MiB:  # the first MiB is on the disk
                assert time.monotonic() < deadline, "the first MiB never arrived"
                time.sleep(0.02)
            fill(clean, leave=2 * MiB)  # someone else fills the disk meanwhile
            for _ in range(11):
                yield b"t" * MiB

        headers = {**alice, **TUS, "Upload-Offset": "0",
                   "Content-Type": "application/offset+octet-stream"}  # fmt: skip
        answer = raw_request(portal, "PATCH", location, headers, body())
        assert answer.status == 507, answer
        detail = json.loads(answer.body)["detail"]
        assert "full" in detail and "removed" in detail and f"{length} bytes" in detail, detail
        after = c.head(location, headers={**alice, **TUS})
        again = tus_create(c, alice, "big.bin", length)
    assert after.status_code == 404  # the upload is over, and says so
    assert list(everything(clean)) == ["filler"]  # no partial bytes
    assert again.status_code == 507  # and no room for it now


def test_tus_resume_that_no_longer_fits_removes_the_partial_file(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    with portal.client() as c:
        created = tus_create(c, alice, "later.bin", 8 * MiB)
        location = created.headers["location"]
        first = c.patch(
            location, content=b"a" * MiB,
            headers={**alice, **TUS, "Upload-Offset": "0",
                     "Content-Type": "application/offset+octet-stream"},
        )  # fmt: skip
        assert first.status_code == 204, first.text
        fill(clean, leave=MiB)  # the other 7 MiB no longer fit
        second = c.patch(
            location, content=b"a" * MiB,
            headers={**alice, **TUS, "Upload-Offset": str(MiB),
                     "Content-Type": "application/offset+octet-stream"},
        )  # fmt: skip
        after = c.head(location, headers={**alice, **TUS})
    assert second.status_code == 507, second.text
    assert "removed" in second.json()["detail"] and "cancelled" in second.json()["detail"]
    assert after.status_code == 404
    assert list(everything(clean)) == ["filler"]


# --- multipart ---------------------------------------------------------------------------


def test_multipart_declared_larger_than_the_free_space_writes_nothing(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    fill(clean, leave=4 * MiB)
    with portal.client() as c:
        r = c.post(f"{API}/uploads", headers=alice, files={"files": ("six.bin", b"s" * 6 * MiB)})
    assert r.status_code == 507, r.text
    assert "bytes" in r.json()["detail"] and "free for you" in r.json()["detail"]
    assert list(everything(clean)) == ["filler"]
    assert not (clean / "uploads").exists()  # not even the folder


def test_multipart_refused_at_the_second_file_removes_the_first(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    files = [("files", ("ok.txt", b"fine\n")), ("files", ("big.bin", b"b" * (MAX_FILE + 1)))]
    with portal.client() as c:
        r = c.post(f"{API}/uploads", headers=alice, files=files)
    assert r.status_code == 413 and "big.bin" in r.json()["detail"], r.text
    assert list(everything(clean)) == [] and list((clean / "uploads").iterdir()) == []


def test_multipart_chunked_disk_full_mid_write_leaves_nothing(
    portal: ServicePortal, alice: dict[str, str], clean: Path, portal_tmp: Path
) -> None:
    fill(clean, leave=4 * MiB)
    answer = raw_request(portal, "POST", f"{API}/uploads", {**alice, **MULTIPART},
                         multipart("six.bin", 6 * MiB))  # fmt: skip
    assert answer.status == 507, answer
    assert "full" in json.loads(answer.body)["detail"]
    assert list(everything(clean)) == ["filler"]
    assert [p.name for p in (clean / "uploads").iterdir()] == []  # the request's folder went
    assert list(portal_tmp.iterdir()) == []


def test_multipart_chunked_over_the_limit_is_cut_off_as_it_arrives(
    portal: ServicePortal, alice: dict[str, str], clean: Path, portal_tmp: Path
) -> None:
    """A chunked body with a 64 MiB file (limit 8 MiB, disk 32 MiB free): 413 after
    at most the limit and a buffer were read. Meanwhile every file the helper writes
    and the portal's TMPDIR are watched: nothing grows past the limit anywhere."""
    largest = {"area": 0, "portal_tmp": 0}
    stop = threading.Event()
    tmp_before = used_bytes(portal_tmp)

    def watch() -> None:
        while not stop.is_set():
            largest["area"] = max([largest["area"], *everything(clean).values()])
            largest["portal_tmp"] = max(largest["portal_tmp"], used_bytes(portal_tmp) - tmp_before)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answer = raw_request(portal, "POST", f"{API}/uploads", {**alice, **MULTIPART},
                             multipart("huge.bin", 64 * MiB))  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    print(
        f"chunked 64 MiB, limit {MAX_FILE}: client sent {answer.sent}, largest file in the "
        f"area {largest['area']}, portal TMPDIR grew by at most {largest['portal_tmp']}"
    )
    assert answer.status == 413, answer
    assert "limit" in json.loads(answer.body)["detail"]
    # What the client got into the connection: what the server read, plus the kernel's
    # socket buffers (a few MiB on loopback); far from the 64 MiB it had to send.
    assert answer.sent < MAX_FILE + 12 * MiB, answer.sent
    assert 0 < largest["area"] <= MAX_FILE, largest  # written as alice, never past the limit
    assert largest["portal_tmp"] < MiB and list(portal_tmp.iterdir()) == []
    assert list(everything(clean)) == []  # and the partial file is gone


def test_declared_length_over_the_limit_is_refused_before_the_body(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    headers = {**alice, **MULTIPART, "Content-Length": str(1024**3 + 1)}
    started = time.monotonic()
    answer = raw_request(portal, "POST", f"{API}/uploads", headers, iter([]), chunked=False)
    assert answer.status == 413, answer
    assert time.monotonic() - started < 5  # answered without waiting for a body
    assert not (clean / "uploads").exists()


def helper_runs(portal: ServicePortal) -> dict[str, float]:
    """How often the portal ran the helper, by operation (its Prometheus histogram)."""
    with portal.client() as c:
        text = c.get("/metrics").text
    runs = {}
    for line in text.splitlines():
        if line.startswith("hpcportal_runas_seconds_count{"):
            op = line.split('op="', 1)[1].split('"', 1)[0]
            runs[op] = float(line.rsplit(" ", 1)[1])
    return runs


def test_small_uploads_stay_fast_and_land_whole(
    portal: ServicePortal, alice: dict[str, str], clean: Path
) -> None:
    """Two small files: one helper run for the folder and one per file, as before the
    room check (it happens inside those runs), so small uploads cost what they did;
    the very first upload into an area that does not exist yet takes one more (the
    helper walks from the area, and makes it from ``/`` when it is missing).
    The time is printed, not asserted: on a loaded machine one helper run through sudo
    takes from 40 to 300 ms."""
    first_use = not (clean / "uploads").exists()
    before = helper_runs(portal)
    timings = []
    with portal.client() as c:
        for i in range(5):
            started = time.perf_counter()
            r = c.post(
                f"{API}/uploads", headers=alice,
                files=[("files", (f"a{i}.csv", b"1,2\n")), ("files", (f"b{i}.txt", b"hi\n"))],
            )  # fmt: skip
            timings.append(time.perf_counter() - started)
            assert r.status_code == 201, r.text
            assert [f["size"] for f in r.json()] == [4, 3]
    after = helper_runs(portal)
    runs = {op: after[op] - before.get(op, 0) for op in after if after[op] != before.get(op, 0)}
    assert runs == {"mkdir": 5 + first_use, "write": 10}, runs
    timings.sort()
    print(f"two small files: median {timings[2] * 1000:.0f} ms ({len(timings)} uploads)")
    files = everything(clean)
    assert len(files) == 10 and not [p for p in files if "/." in p], files
