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
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import re
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import anyio
from prometheus_client import Histogram

from hpcportal.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    InsufficientStorage,
    InvalidInput,
    IsDirectory,
    Misconfigured,
    NotFound,
    PayloadTooLarge,
    PortalError,
    PreconditionFailed,
    PreconditionRequired,
    RunAsUnavailable,
)
from hpcportal.runas.assemble import SYSTEM_PYTHON, helper_program
from hpcportal.runas.denied import DenyList, installed_deny_list, portal_deny_list
from hpcportal.runas.slurm_dir import UnsafeSlurmDir, installed_slurm_dir, trusted_slurm_dir

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_DISABLED_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})
PAYLOAD_CHUNK = 1024 * 1024

RUNAS_SECONDS = Histogram(
    "hpcportal_runas_seconds", "Time of one call through the run-as boundary", ["op"]
)


class RunAsRefused(Exception):
    """The target user is not one the portal may act for."""


class RunAsTimeout(PortalError):
    status, code = 504, "runas_timeout"


def check_target_user(
    username: str, min_uid: int, deny: DenyList = DenyList(), group: str | None = None
) -> pwd.struct_passwd:
    """Return the user's passwd entry if the portal may act as them, else raise. The
    helper and sudo check the same again (``denied.py``); this says why, as a 403."""
    if not _NAME.fullmatch(username):
        raise RunAsRefused(f"{username!r} is not a valid user name")
    try:
        entry = pwd.getpwnam(username)
    except KeyError as exc:
        raise RunAsRefused(f"no such user {username!r}") from exc
    if entry.pw_uid == 0 or entry.pw_uid < min_uid:
        raise RunAsRefused(f"{username!r} is a system account")
    if deny.refuses(entry):
        raise RunAsRefused(
            f"{username!r} is a Slurm daemon account or on the deny list (runas_deny_users)"
        )
    if group is not None and not _in_group(entry, group):
        raise RunAsRefused(f"{username!r} is not in the group {group!r} of portal users")
    if entry.pw_shell in _DISABLED_SHELLS:
        raise RunAsRefused(f"{username!r} has a disabled shell")
    return entry


def _in_group(entry: pwd.struct_passwd, group: str) -> bool:
    """Membership as sudo sees it: the primary group or a supplementary one."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False  # a group that does not exist admits nobody, as in sudoers
    return gid in os.getgrouplist(entry.pw_name, entry.pw_gid)


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
        try:
            argv = self.command(username)
        except RunAsRefused as exc:
            raise Forbidden(f"The portal does not act as that user: {exc}.") from exc
        header = dict(request, v=1)
        if self.slurm_conf is not None:
            header.setdefault("slurm_conf", str(self.slurm_conf))
        line = json.dumps(header).encode() + b"\n"
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
            raise RunAsUnavailable(
                f"The portal cannot act as users: {text} "
                "(is the sudoers rule from `hpcportal runas install` in place, and does "
                "its runas_group admit this user?)"
            )
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
        try:
            answer = json.loads(first)
        except ValueError as exc:
            raise PortalError(f"The run-as helper gave no answer: {done.stderr[:300]}") from exc
        if not isinstance(answer, dict):
            raise PortalError("The run-as helper gave a malformed answer.")
        if not answer.get("ok"):
            raise helper_error(answer, request.get("path"))
        return answer

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
        try:
            answer = json.loads(first) if first else {"ok": False, "message": done.stderr}
        except ValueError as exc:
            raise PortalError(f"The run-as helper gave no answer: {done.stderr[:300]}") from exc
        if not isinstance(answer, dict) or not answer.get("ok"):
            raise helper_error(answer if isinstance(answer, dict) else {}, request.get("path"))
        return answer, data

    async def open_stream(self, username: str, request: dict[str, Any]) -> HelperStream:
        """Start the helper as ``username`` for a streamed exchange (asyncio, constant
        memory): large payloads written in chunks, large answers read in chunks."""
        try:
            argv = self.command(username)
        except RunAsRefused as exc:
            raise Forbidden(f"The portal does not act as that user: {exc}.") from exc
        header = dict(request, v=1)
        if self.slurm_conf is not None:
            header.setdefault("slurm_conf", str(self.slurm_conf))
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
        await stream.write(json.dumps(header).encode() + b"\n")
        return stream


STREAM_LINE_LIMIT = 1024 * 1024
STREAM_CHUNK = 256 * 1024


class HelperStream:
    """One helper process whose stdin and stdout the caller streams.

    ``write`` feeds the payload (waiting while the pipe is full, so memory stays
    flat); ``answer`` reads the helper's JSON line (the header of a streamed answer,
    or the result after the payload), turning errors into typed ones; ``chunks`` and
    ``lines`` read what follows. ``aclose`` ends the helper if it still runs (SIGTERM,
    which sudo relays, then SIGKILL) and is safe to call more than once.
    """

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        stderr: IO[bytes],
        op: str,
        path: object,
    ) -> None:
        self.proc = proc
        self.op = op
        self.path = path
        self._stderr = stderr
        self._started = time.perf_counter()
        self._closed = False
        self.input_open = True

    async def write(self, data: bytes) -> bool:
        """Send payload bytes; False once the helper stopped reading (its answer says why)."""
        stdin = self.proc.stdin
        if not self.input_open or stdin is None:
            return False
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.input_open = False
            return False
        return True

    async def end_input(self) -> None:
        stdin = self.proc.stdin
        if self.input_open and stdin is not None:
            self.input_open = False
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.close()
                await stdin.wait_closed()

    def _error_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read(4000).decode("utf-8", "replace").strip()

    async def answer(self, timeout: float = 120.0) -> dict[str, Any]:
        """The helper's next JSON line; a failure becomes its typed error."""
        stdout = self.proc.stdout
        assert stdout is not None
        line = await asyncio.wait_for(stdout.readline(), timeout)
        if not line:
            await asyncio.wait_for(self.proc.wait(), timeout)
            text = self._error_text()
            if text.startswith("sudo:"):
                raise RunAsUnavailable(
                    f"The portal cannot act as users: {text} "
                    "(is the sudoers rule from `hpcportal runas install` in place, and does "
                    "its runas_group admit this user?)"
                )
            raise PortalError(f"The run-as helper gave no answer: {text[:300]}")
        try:
            result = json.loads(line)
        except ValueError as exc:
            raise PortalError("The run-as helper gave a malformed answer.") from exc
        if not isinstance(result, dict):
            raise PortalError("The run-as helper gave a malformed answer.")
        if result.get("ok") is False:
            raise helper_error(result, self.path)
        return result

    async def chunks(self, size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
        """The raw bytes after the header until the helper ends; a helper that fails
        mid-stream raises (so the server aborts the response rather than end it
        cleanly). The helper is closed whatever happens."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while data := await stdout.read(size):
                yield data
            await self._check_exit()
        finally:
            await self.aclose()

    async def lines(self) -> AsyncIterator[bytes]:
        """The JSON lines after the header until the helper ends (then closed)."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                yield line
            await self._check_exit()
        finally:
            await self.aclose()

    async def _check_exit(self) -> None:
        code = await self.proc.wait()
        if code != 0:
            raise PortalError(f"The run-as helper stopped mid-stream: {self._error_text()[:300]}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc = self.proc
        with anyio.CancelScope(shield=True):
            if proc.returncode is None and proc.stdout is not None and proc.stdout.at_eof():
                # The helper has said all it will and is exiting: wait for that rather
                # than terminate it, since runuser answers a relayed SIGTERM by sleeping
                # 2 s before it exits.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 2)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            self._stderr.close()
        RUNAS_SECONDS.labels(self.op).observe(time.perf_counter() - self._started)


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


def helper_error(answer: dict[str, Any], path: object) -> PortalError:
    """The helper's error as the typed error a person can act on.

    ``permission`` is the kernel's own EACCES/EPERM for the user, so the 403 it
    becomes is the system's answer, not a rule of the portal.
    """
    kind = answer.get("error")
    message = str(answer.get("message") or "failed")
    where = f" ({path})" if isinstance(path, str) and path else ""
    if kind == "permission":
        return Forbidden(f"The system refused: permission denied{where}.")
    if kind == "not_found":
        return NotFound(f"No such file or directory{where}.")
    if kind == "exists":
        return Conflict(f"A file with that name exists already{where}; nothing was replaced.")
    if kind in ("no_space", "quota"):
        return InsufficientStorage(f"No space left for you there{where}: {message}.")
    if kind == "refused":
        return Forbidden(f"Refused by the run-as boundary: {message}.")
    if kind == "outside":
        return Forbidden(f"Refused: {message}.")
    if kind == "is_directory":
        return IsDirectory(f"That is a folder, not a file{where}.")
    if kind == "not_regular":
        return Conflict(f"{message[:1].upper()}{message[1:]}.")
    if kind == "not_empty":
        return Conflict(f"The folder is not empty{where}.")
    if kind == "cross_device":
        return Conflict(f"That crosses file systems{where}: {message}.")
    if kind == "read_only":
        return Forbidden(f"The system refused: read-only file system{where}.")
    if kind == "precondition":
        return PreconditionFailed(f"{message[:1].upper()}{message[1:]}.")
    if kind == "precondition_required":
        return PreconditionRequired(f"{message[:1].upper()}{message[1:]}.")
    if kind == "checksum":
        return ChecksumMismatch(f"{message[:1].upper()}{message[1:]}.")
    if kind == "conflict":
        return Conflict(f"{message[:1].upper()}{message[1:]}.")
    if kind == "too_large":
        return PayloadTooLarge(f"{message[:1].upper()}{message[1:]}.")
    if kind in ("invalid", "name_too_long", "symlink"):
        return InvalidInput(f"The system refused{where}: {message}.")
    return PortalError(f"Acting as the user failed{where}: {message}.")
