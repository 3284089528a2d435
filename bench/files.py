"""Files through the portal: 1 GiB up and down against ``cp``, a 100,000-entry folder,
and the portal's peak memory.

Run as root with the dev cluster up::

    .venv/bin/python bench/files.py [--gib 1] [--chunk-mib 0] [--entries 100000]

The portal runs exactly as in production: as the service account ``hpcportal``,
writing and reading as alice through sudo and the run-as helper. In one run the
bench

1. uploads ``--gib`` GiB with tus (one streamed PATCH, or PATCHes of ``--chunk-mib``
   MiB with an sha256 ``Upload-Checksum`` each): the helper writes the bytes, fsyncs
   the file, links it to its name and fsyncs the folder;
2. copies that file as alice with ``cp --reflink=never`` followed by ``sync`` of the
   copy and of the folder (the same durability as the upload) on the same disk,
   three times spread over the run (the disk's flush speed varies); the median is
   the baseline for both ratios (target: portal >= 0.5 x cp);
3. downloads the file back with ``?download=1`` and, inside a ``?zip=1`` archive,
   checks both sha256 digests (the client hashes and drops the bytes);
4. times ``dd`` as alice (write with fsync, read) for reference;
5. creates ``--entries`` empty files in one folder (as alice, one Python process),
   asks the portal for its first page (``GET /api/v1/files/home/<folder>``, the
   default page of 200 entries sorted by name) several times, the first one and
   then warm ones (target: <= 300 ms), also sorted by ``-mtime`` (every entry
   stat-ed) for reference, and removes the folder;
6. prints the portal process's peak RSS (``VmHWM`` of ``/proc/<pid>/status``)
   before and after the transfers against the file size;
7. uploads ``--small`` small files (``--small-kib`` KiB each) one after the other, as
   the file manager does: with one request each (tus creation-with-upload: the POST
   carries the bytes, one run of the helper creates, writes, fsyncs and links the
   file) and, for comparison, with two (POST, then PATCH: two helper runs), against
   alice copying the same file with ``cp`` followed by ``sync`` of the copy and the
   folder, started through ``runuser`` like the portal's helper through ``sudo``. The
   three are interleaved so load changes hit them alike; the ratio of the medians
   is printed (target: one request well under a second). ``--small-only`` runs just
   this part; with ``--root`` the portal runs as root instead (in this process, the
   helper started with ``runuser``, as in the demo and the browser tests).

Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcportal.devcluster import DevCluster  # noqa: E402
from tests.integration.portal_server import portal_settings, run_portal  # noqa: E402
from tests.integration.service_portal import service_portal  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
MIB = 1 << 20


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS (now) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def payload(size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``size`` bytes that do not compress (a random MiB, numbered), hashed on the way."""
    block = os.urandom(MIB)
    sent = 0
    while sent < size:
        chunk = (sent // MIB).to_bytes(8, "big") + block[8 : min(MIB, size - sent)]
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def upload(
    client: httpx.Client, headers: dict[str, str], name: str, folder: str, size: int, chunk: int
) -> str:
    metadata = f"filename {b64(name)},root {b64('home')},folder {b64(folder)}"
    created = client.post(
        "/api/v1/uploads/tus",
        headers={**headers, **TUS, "Upload-Length": str(size), "Upload-Metadata": metadata},
    )
    if created.status_code != 201:
        raise SystemExit(f"create failed: {created.status_code} {created.text}")
    location = created.headers["location"]
    digest = hashlib.sha256()
    stream = payload(size, digest)
    offset = 0
    while offset < size:
        length = size - offset if chunk <= 0 else min(chunk, size - offset)
        extra = {}
        if chunk > 0:
            part = b"".join(_take(stream, length))
            extra["Upload-Checksum"] = (
                "sha256 " + base64.b64encode(hashlib.sha256(part).digest()).decode()
            )
            body: bytes | Iterator[bytes] = part
        else:
            body = stream
        r = client.patch(
            location,
            headers={**headers, **TUS, **extra, "Upload-Offset": str(offset),
                     "Content-Type": "application/offset+octet-stream",
                     "Content-Length": str(length)},
            content=body,
        )  # fmt: skip
        if r.status_code != 204:
            raise SystemExit(f"PATCH failed: {r.status_code} {r.text}")
        offset = int(r.headers["upload-offset"])
    return digest.hexdigest()


def _take(stream: Iterator[bytes], length: int) -> Iterator[bytes]:
    taken = 0
    while taken < length:
        chunk = next(stream)
        taken += len(chunk)
        yield chunk


def download(
    client: httpx.Client, headers: dict[str, str], path: str, params: dict[str, str]
) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = 0
    with client.stream("GET", f"/api/v1/files/home/{path}", headers=headers, params=params) as r:
        if r.status_code != 200:
            raise SystemExit(f"download failed: {r.status_code} {r.read()[:300]!r}")
        for chunk in r.iter_bytes(MIB):
            digest.update(chunk)
            total += len(chunk)
    return digest.hexdigest(), total


def as_alice(script: str) -> None:
    subprocess.run(["runuser", "-u", "alice", "--", "sh", "-c", script], check=True, cwd="/tmp")


def cp_copy(folder: str, source: str) -> float:
    """Seconds for alice to copy ``source`` beside itself, durable like an upload:
    ``cp`` (a real copy, no reflink), then fsync of the copy and of the folder."""
    base = shlex.quote(f"/home/alice/{folder}")
    src, dst = f"{base}/{shlex.quote(source)}", f"{base}/cp-copy.bin"
    started = time.perf_counter()
    as_alice(f"cp --reflink=never {src} {dst} && sync {dst} {base}")
    seconds = time.perf_counter() - started
    os.unlink(f"/home/alice/{folder}/cp-copy.bin")
    return seconds


def many_entries(folder: str, name: str, count: int) -> str:
    """A folder of ``count`` empty files, made by alice in one Python process."""
    path = f"/home/alice/{folder}/{name}"
    code = (
        "import os, sys\n"
        "path, count = sys.argv[1], int(sys.argv[2])\n"
        "os.mkdir(path)\n"
        "fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)\n"
        "for i in range(count):\n"
        "    os.close(os.open(f'file-{i:06d}.dat', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))\n"
    )
    subprocess.run(
        ["runuser", "-u", "alice", "--", "python3", "-c", code, path, str(count)],
        check=True,
        cwd="/tmp",
    )
    return f"{folder}/{name}"


def first_page(
    client: httpx.Client, headers: dict[str, str], path: str, params: dict[str, str], count: int
) -> tuple[list[float], int, int]:
    """Seconds for each of ``count`` requests of a folder's first page; the entries on
    the page and the folder's total as the portal reported them."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        r = client.get(f"/api/v1/files/home/{path}", headers=headers, params=params)
        seconds.append(time.perf_counter() - started)
        if r.status_code != 200:
            raise SystemExit(f"listing failed: {r.status_code} {r.text[:300]}")
    body = r.json()
    return seconds, len(body["entries"]), int(body["total"])


def bare_copy(folder: str, size: int) -> tuple[float, float]:
    """The same bytes written and read back by alice herself (``dd``), for comparison."""
    path = f"/home/alice/{folder}/bare.bin"
    started = time.perf_counter()
    writer = subprocess.Popen(
        ["runuser", "-u", "alice", "--", "dd", f"of={path}", "bs=1M", "status=none", "conv=fsync"],
        stdin=subprocess.PIPE,
    )
    assert writer.stdin is not None
    for chunk in payload(size, hashlib.sha256()):
        writer.stdin.write(chunk)
    writer.stdin.close()
    writer.wait()
    written = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        ["runuser", "-u", "alice", "--", "dd", f"if={path}", "of=/dev/null", "bs=1M",
         "status=none"],
        check=True,
    )  # fmt: skip
    read = time.perf_counter() - started
    os.unlink(path)
    return written, read


def one_request(
    client: httpx.Client, headers: dict[str, str], name: str, folder: str, data: bytes
) -> None:
    """A whole small file in the creating POST (tus creation-with-upload)."""
    metadata = f"filename {b64(name)},root {b64('home')},folder {b64(folder)}"
    r = client.post(
        "/api/v1/uploads/tus",
        headers={**headers, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata,
                 "Content-Type": "application/offset+octet-stream"},
        content=data,
    )  # fmt: skip
    if r.status_code != 201 or int(r.headers["upload-offset"]) != len(data):
        raise SystemExit(f"one-request upload failed: {r.status_code} {r.text}")


def small_files(
    client: httpx.Client, headers: dict[str, str], folder: str, count: int, size: int
) -> dict[str, list[float]]:
    """Seconds per small file: one request, two requests, and ``cp`` + ``sync`` as alice,
    interleaved. Every file is checked on disk afterwards."""
    data = os.urandom(size)
    seconds: dict[str, list[float]] = {"one": [], "two": [], "cp": []}
    base = f"/home/alice/{folder}"
    for i in range(count):
        started = time.perf_counter()
        one_request(client, headers, f"one-{i}.bin", folder, data)
        seconds["one"].append(time.perf_counter() - started)
        started = time.perf_counter()
        upload(client, headers, f"two-{i}.bin", folder, size, 0)
        seconds["two"].append(time.perf_counter() - started)
        src, dst = shlex.quote(f"{base}/one-0.bin"), shlex.quote(f"{base}/cp-{i}.bin")
        started = time.perf_counter()
        as_alice(f"cp --reflink=never {src} {dst} && sync {dst} {shlex.quote(base)}")
        seconds["cp"].append(time.perf_counter() - started)
    for i in range(count):
        if Path(f"{base}/one-{i}.bin").read_bytes() != data:
            raise SystemExit(f"one-{i}.bin differs from what was sent")
        if Path(f"{base}/two-{i}.bin").stat().st_size != size:
            raise SystemExit(f"two-{i}.bin has the wrong size")
    return seconds


def report_small(seconds: dict[str, list[float]], size: int) -> None:
    count = len(seconds["cp"])
    p50 = {k: statistics.median(v) for k, v in seconds.items()}
    p90 = {k: sorted(v)[max(0, int(len(v) * 0.9) - 1)] for k, v in seconds.items()}
    print(f"small files: {count} x {size // 1024} KiB each way, one at a time, interleaved")
    for key, label in (("one", "portal, one request (creation-with-upload)"),
                       ("two", "portal, two requests (POST + PATCH)"),
                       ("cp", "cp + sync as alice through runuser")):  # fmt: skip
        print(f"  {label:44s} p50 {ms(p50[key]):>7s}  p90 {ms(p90[key]):>7s}")
    print(
        f"  ratio to cp (p50): one request {p50['one'] / p50['cp']:.1f}x, "
        f"two requests {p50['two'] / p50['cp']:.1f}x; one request saves "
        f"{(1 - p50['one'] / p50['two']) * 100:.0f} % of the two-request time"
    )
    verdict = "met" if p90["one"] < 1.0 else "MISSED"
    print(f"  one request p90 {ms(p90['one'])} (target < 1000 ms: {verdict})")


@contextmanager
def small_portal(slurm_conf: str, workdir: Path, *, as_root: bool) -> Iterator[Any]:
    """The production portal (service account, sudo), or one running as root in this
    process (the helper under runuser)."""
    if not as_root:
        with service_portal(slurm_conf, workdir) as portal:
            yield portal
        return
    settings = portal_settings(workdir, slurm_conf)
    with run_portal(settings) as portal:
        yield portal


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--chunk-mib", type=int, default=0, help="0: one streamed PATCH")
    parser.add_argument("--entries", type=int, default=100_000, help="files in the big folder")
    parser.add_argument("--pages", type=int, default=10, help="first-page requests to time")
    parser.add_argument("--small", type=int, default=20, help="small files to upload")
    parser.add_argument("--small-kib", type=int, default=4, help="size of each small file")
    parser.add_argument("--small-only", action="store_true", help="only the small files")
    parser.add_argument("--root", action="store_true", help="small files, portal as root")
    parser.add_argument("--dir", type=Path, default=REPO / ".devcluster")
    args = parser.parse_args()
    if not (1 <= args.small <= 1000 and 1 <= args.small_kib <= 4096):
        raise SystemExit("bounded: --small 1..1000, --small-kib 1..4096")
    if not (0 < args.gib <= 8 and 1 <= args.entries <= 1_000_000 and 2 <= args.pages <= 100):
        raise SystemExit("bounded: --gib up to 8, --entries up to 1,000,000, --pages 2..100")
    size = int(args.gib * (1 << 30))
    cluster = DevCluster(args.dir)
    if not cluster.is_up():
        cluster.up()
    workdir = Path(tempfile.mkdtemp(prefix="hpcportal-bench-", dir="/tmp"))
    workdir.chmod(0o755)
    folder = f"bench-files-{secrets.token_hex(4)}"
    subprocess.run(["runuser", "-u", "alice", "--", "mkdir", f"/home/alice/{folder}"], check=True)
    cp_seconds: list[float] = []
    if args.small_only or args.root:
        try:
            with (
                small_portal(str(cluster.slurm_conf), workdir, as_root=args.root) as portal,
                httpx.Client(base_url=portal.url, timeout=600) as client,
            ):
                headers = portal.login("alice")
                client.get("/api/v1/files", headers=headers)  # warm-up
                small = small_files(client, headers, folder, args.small, args.small_kib * 1024)
        finally:
            shutil.rmtree(f"/home/alice/{folder}", ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
        how = "as root (runuser)" if args.root else "as the service account (sudo)"
        print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; portal {how}; "
              f"load average at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
        report_small(small, args.small_kib * 1024)
        return
    try:
        with (
            service_portal(str(cluster.slurm_conf), workdir) as portal,
            httpx.Client(base_url=portal.url, timeout=600) as client,
        ):
            headers = portal.login("alice")
            pid = portal.pid()
            client.get("/api/v1/files", headers=headers)  # warm-up: first sudo, first query
            upload(client, headers, "warm.bin", folder, MIB, 0)
            download(client, headers, f"{folder}/warm.bin", {"download": "1"})
            start = memory(pid)
            started = time.perf_counter()
            sent = upload(client, headers, "big.bin", folder, size, args.chunk_mib * MIB)
            up_seconds = time.perf_counter() - started
            after_up = memory(pid)
            cp_seconds.append(cp_copy(folder, "big.bin"))
            started = time.perf_counter()
            got, length = download(client, headers, f"{folder}/big.bin", {"download": "1"})
            down_seconds = time.perf_counter() - started
            after_down = memory(pid)
            started = time.perf_counter()
            _, zipped = download(client, headers, folder, {"zip": "1"})
            zip_seconds = time.perf_counter() - started
            end = memory(pid)
            cp_seconds.append(cp_copy(folder, "big.bin"))
            bare_write, bare_read = bare_copy(folder, size)
            cp_seconds.append(cp_copy(folder, "big.bin"))
            os.unlink(f"/home/alice/{folder}/big.bin")
            started = time.perf_counter()
            many = many_entries(folder, "many", args.entries)
            create_seconds = time.perf_counter() - started
            by_name, shown, total = first_page(client, headers, many, {}, args.pages)
            by_mtime, _, _ = first_page(client, headers, many, {"sort": "-mtime"}, 3)
            started = time.perf_counter()
            shutil.rmtree(f"/home/alice/{many}")
            remove_seconds = time.perf_counter() - started
            small = small_files(client, headers, folder, args.small, args.small_kib * 1024)
    finally:
        shutil.rmtree(f"/home/alice/{folder}", ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    if got != sent or length != size:
        raise SystemExit(f"digest mismatch: sent {sent}, got {got} ({length} bytes)")
    if total != args.entries:
        raise SystemExit(f"the portal counted {total} entries, not {args.entries}")
    mib = size / MIB
    cp_median = statistics.median(cp_seconds)
    how = "one streamed PATCH" if args.chunk_mib <= 0 else f"PATCHes of {args.chunk_mib} MiB"
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; file {mib:.0f} MiB; upload: {how}; "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"upload   {up_seconds:6.1f} s  {mib / up_seconds:7.1f} MiB/s  (sha256 verified)")
    print(f"download {down_seconds:6.1f} s  {mib / down_seconds:7.1f} MiB/s  (sha256 verified)")
    print(f"zip      {zip_seconds:6.1f} s  {zipped / MIB / zip_seconds:7.1f} MiB/s of archive")
    print(
        "cp as alice (--reflink=never, then sync of the copy and the folder): "
        + ", ".join(f"{t:.1f} s ({mib / t:.1f} MiB/s)" for t in cp_seconds)
        + f"; median {mib / cp_median:.1f} MiB/s"
    )
    for name, seconds in (("upload", up_seconds), ("download", down_seconds)):
        ratio = cp_median / seconds
        verdict = "met" if ratio >= 0.5 else "MISSED"
        print(f"{name}/cp throughput ratio {ratio:.2f}  (target >= 0.50: {verdict})")
    print(f"bare dd as alice: write {mib / bare_write:.1f} MiB/s (with fsync), "
          f"read {mib / bare_read:.1f} MiB/s")  # fmt: skip
    p50 = statistics.median(by_name[1:])
    verdict = "met" if max(by_name[0], p50) <= 0.3 else "MISSED"
    print(
        f"folder of {total:,} entries (made in {create_seconds:.1f} s, removed in "
        f"{remove_seconds:.1f} s): first page ({shown} entries, by name): first {ms(by_name[0])}, "
        f"then p50 {ms(p50)}, max {ms(max(by_name[1:]))} over {len(by_name) - 1}  "
        f"(target <= 300 ms: {verdict})"
    )
    print("  the same page by -mtime (every entry stat-ed): " + ", ".join(ms(t) for t in by_mtime))
    peaks = [start, after_up, after_down, end]
    before, up, down, zipped_peak = (f"{m['VmHWM'] / MIB:.1f} MiB" for m in peaks)
    print(
        f"portal peak RSS (VmHWM): before {before}, after upload {up}, "
        f"after download {down}, after zip {zipped_peak}"
    )
    grew = (end["VmHWM"] - start["VmHWM"]) / MIB
    print(f"peak grew by {grew:.1f} MiB for a {mib:.0f} MiB file ({grew / mib * 100:.2f} % of it)")
    report_small(small, args.small_kib * 1024)


if __name__ == "__main__":
    main()
