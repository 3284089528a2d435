"""The portal's side of the privileged boundary: run the helper as a Unix user.

Every action done *for* a user (sbatch, scancel, reading job output, writing uploads)
goes through :class:`RunAs`, which starts ``hpcportal.runas.helper`` as that user and
sends it one request. The helper holds only that user's rights, so the kernel and
Slurm decide what is allowed; the portal never widens them.

Two ways to become the user, same helper code:

- ``sudo``: the portal runs as an unprivileged service account, and the sudoers rule
  written by ``hpcportal runas install`` lets it run the installed helper (and
  nothing else) as any user but root. This is production.
- ``runuser``: the portal runs as root (the demo, some tests) and runs the helper
  from the package with the interpreter that runs the portal.

Whom the portal may act as is checked in ``users.py``; the helper's answers are read
and its errors typed in ``answers.py``; a streamed exchange is a ``HelperStream``
(``stream.py``); the program itself is assembled in ``assemble.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from hpcportal.errors import (
    Forbidden,
    Misconfigured,
    PortalError,
)
from hpcportal.runas.answers import decode_answer, unavailable
from hpcportal.runas.assemble import SYSTEM_PYTHON, helper_program
from hpcportal.runas.denied import DenyList, installed_deny_list, portal_deny_list
from hpcportal.runas.slurm_dir import UnsafeSlurmDir, installed_slurm_dir, trusted_slurm_dir
from hpcportal.runas.stream import RUNAS_SECONDS, STREAM_LINE_LIMIT, HelperStream
from hpcportal.runas.users import RunAsRefused, check_target_user

log = logging.getLogger(__name__)
PAYLOAD_CHUNK = 1024 * 1024


class RunAsTimeout(PortalError):
    status, code = 504, "runas_timeout"


def _compare_installed_deny(helper: Path, deny: DenyList) -> None:
    """Warn when the installed helper does not refuse every account the portal does
    (SlurmUser changed, or runas_deny_users grew, since `hpcportal runas install`)."""
    installed = installed_deny_list(helper)
    missing = deny.names - (installed or frozenset()) - {"root"}
    if installed is not None and missing:
        log.warning(
            "%s does not refuse %s, which the portal does (SlurmUser/SlurmdUser or "
            "runas_deny_users changed): run `hpcportal runas install` again as root",
            helper,
            ", ".join(sorted(missing)),
        )


def _compare_installed(helper: Path, slurm_bin_dir: Path | None) -> None:
    """Warn when the installed helper runs another Slurm than the portal's own."""
    installed = installed_slurm_dir(helper)
    if installed is None:
        return  # not installed or unreadable: the first call says so
    wanted = os.path.realpath(slurm_bin_dir) if slurm_bin_dir is not None else ""
    if installed != wanted:
        log.warning(
            "slurm_bin_dir is %r but %s runs Slurm from %r: as users the portal would run "
            "another Slurm; run `hpcportal runas install --slurm-bin-dir %s` as root",
            wanted or "(PATH)",
            helper,
            installed or "(PATH)",
            wanted or "''",
        )


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float


Payload = bytes | IO[bytes] | None


class RunAs:
    """Starts the helper as a user; one instance per process, thread-safe."""

    def __init__(
        self,
        *,
        method: Literal["auto", "runuser", "sudo"] = "auto",
        helper: Path = Path("/usr/local/libexec/hpcportal-runas"),
        min_uid: int = 1000,
        slurm_conf: Path | None = None,
        slurm_bin_dir: Path | None = None,
        deny_users: Iterable[str] = (),
        group: str | None = None,
    ) -> None:
        """``slurm_bin_dir`` is the folder the helper runs Slurm commands from (before
        its fixed PATH). Under runuser the portal fixes it in the helper's text, after
        checking that only root can change it (else ``Misconfigured``); under sudo the
        installed helper has its own, fixed by ``hpcportal runas install``, and a
        different one is logged. ``deny_users`` and slurm.conf's SlurmUser and
        SlurmdUser are never acted as (fixed in the helper's text the same way), nor
        anyone outside ``group`` when one is given."""
        if method == "auto":
            method = "runuser" if os.geteuid() == 0 else "sudo"
        self.method: Literal["runuser", "sudo"] = method
        self.helper = helper
        self.min_uid = min_uid
        self.slurm_conf = slurm_conf
        self.deny = portal_deny_list(deny_users, slurm_conf)
        self.group = group
        self.slurm_dir: Path | None = None
        if slurm_bin_dir is not None and method == "runuser":
            try:
                self.slurm_dir = trusted_slurm_dir(slurm_bin_dir)
            except (UnsafeSlurmDir, OSError) as exc:
                raise Misconfigured(f"The Slurm folder cannot be used for users: {exc}") from exc
        elif method == "sudo":
            _compare_installed(helper, slurm_bin_dir)
            _compare_installed_deny(helper, self.deny)

    def _argv(self, username: str) -> list[str]:
        """``command``, with a refused user as the 403 that says why."""
        try:
            return self.command(username)
        except RunAsRefused as exc:
            raise Forbidden(f"The portal does not act as that user: {exc}.") from exc

    def _header(self, request: dict[str, Any]) -> bytes:
        """The request line: the request, the protocol version and the Slurm config."""
        header = dict(request, v=1)
        if self.slurm_conf is not None:
            header.setdefault("slurm_conf", str(self.slurm_conf))
        return json.dumps(header).encode() + b"\n"

    def command(self, username: str) -> list[str]:
        """The argv that starts the helper as ``username`` (after checking the user)."""
        check_target_user(username, self.min_uid, self.deny, self.group)
        if self.method == "runuser":
            # The code travels in argv, so no file of ours needs to be readable by the user.
            return [
                "runuser",
                "-u",
                username,
                "--",
                SYSTEM_PYTHON,
                "-I",
                "-S",
                "-c",
                helper_program(self.slurm_dir, self.deny),
            ]
        return ["sudo", "-n", "-u", username, "--", str(self.helper)]

    def run(
        self,
        username: str,
        request: dict[str, Any],
        *,
        payload: Payload = None,
        timeout: float = 60.0,
    ) -> Completed:
        """Send one request (and its payload) to the helper running as ``username``."""
        argv = self._argv(username)
        line = self._header(request)
        started = time.perf_counter()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            stdout, stderr = _exchange(proc, line, payload, timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise RunAsTimeout(f"Acting as {username} took longer than {timeout:g} s.") from exc
        seconds = time.perf_counter() - started
        RUNAS_SECONDS.labels(str(request.get("op"))).observe(seconds)
        text = stderr.decode("utf-8", "replace").strip()
        if proc.returncode == 1 and not stdout and text.startswith("sudo:"):
            raise unavailable(text)
        return Completed(proc.returncode, stdout, text, seconds)

    def call(
        self,
        username: str,
        request: dict[str, Any],
        *,
        payload: Payload = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """A file operation: the helper's JSON answer, or the typed error it stands for."""
        done = self.run(username, request, payload=payload, timeout=timeout)
        first, _, _ = done.stdout.partition(b"\n")
        return decode_answer(first, done.stderr, request.get("path"))

    def read_file(
        self, username: str, path: str, *, offset: int, length: int
    ) -> tuple[dict[str, Any], bytes]:
        """Read ``length`` bytes at ``offset`` of the file ``path`` names as the user:
        (description, data). The file's folder is the root of the read (one path
        protocol: the helper opens the folder, then the file in it without following
        a link out of it); for job output, which may lie anywhere."""
        folder, _, name = path.rpartition("/")
        request = {
            "op": "read", "root": folder or "/", "path": name, "offset": offset,
            "max_length": length,
        }  # fmt: skip
        return self.read(username, request)

    def read(
        self, username: str, request: dict[str, Any], *, timeout: float = 60.0
    ) -> tuple[dict[str, Any], bytes]:
        """An operation answering a JSON line then bytes, all in memory (small reads)."""
        done = self.run(username, request, timeout=timeout)
        first, _, data = done.stdout.partition(b"\n")
        return decode_answer(first, done.stderr, request.get("path")), data

    async def open_stream(self, username: str, request: dict[str, Any]) -> HelperStream:
        """Start the helper as ``username`` for a streamed exchange (asyncio, constant
        memory): large payloads written in chunks, large answers read in chunks."""
        argv = self._argv(username)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by HelperStream.aclose)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                limit=STREAM_LINE_LIMIT,
            )
        except BaseException:
            stderr.close()
            raise
        stream = HelperStream(proc, stderr, str(request.get("op")), request.get("path"))
        await stream.write(self._header(request))
        return stream


def _exchange(
    proc: subprocess.Popen[bytes], line: bytes, payload: Payload, timeout: float
) -> tuple[bytes, bytes]:
    """Write the request and payload, collect the output. Large payloads are streamed."""
    if payload is None or isinstance(payload, bytes):
        return proc.communicate(line + (payload or b""), timeout=timeout)
    stdin, proc.stdin = proc.stdin, None  # we write it here; communicate() only reads
    assert stdin is not None
    try:
        stdin.write(line)
        for chunk in _chunks(payload):
            stdin.write(chunk)
    except BrokenPipeError:
        pass  # the helper refused early; its answer says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
    return proc.communicate(timeout=timeout)


def _chunks(stream: IO[bytes]) -> Iterable[bytes]:
    while chunk := stream.read(PAYLOAD_CHUNK):
        yield chunk
