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

import contextlib
import functools
import json
import os
import pwd
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from prometheus_client import Histogram

from hpcportal.errors import (
    Conflict,
    Forbidden,
    InsufficientStorage,
    NotFound,
    PortalError,
    RunAsUnavailable,
)

HELPER_SOURCE = Path(__file__).resolve().parent / "helper.py"
#: The interpreter for the helper under runuser: a system one, because the portal's own
#: may live where the target user cannot read it (a virtualenv under /root).
SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)),
    sys.executable,
)
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


def check_target_user(username: str, min_uid: int) -> pwd.struct_passwd:
    """Return the user's passwd entry if the portal may act as them, else raise."""
    if not _NAME.fullmatch(username):
        raise RunAsRefused(f"{username!r} is not a valid user name")
    try:
        entry = pwd.getpwnam(username)
    except KeyError as exc:
        raise RunAsRefused(f"no such user {username!r}") from exc
    if entry.pw_uid == 0 or entry.pw_uid < min_uid:
        raise RunAsRefused(f"{username!r} is a system account")
    if entry.pw_shell in _DISABLED_SHELLS:
        raise RunAsRefused(f"{username!r} has a disabled shell")
    return entry


@functools.cache
def _helper_code() -> str:
    return HELPER_SOURCE.read_text()


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
    ) -> None:
        if method == "auto":
            method = "runuser" if os.geteuid() == 0 else "sudo"
        self.method: Literal["runuser", "sudo"] = method
        self.helper = helper
        self.min_uid = min_uid
        self.slurm_conf = slurm_conf

    def command(self, username: str) -> list[str]:
        """The argv that starts the helper as ``username`` (after checking the user)."""
        check_target_user(username, self.min_uid)
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
                _helper_code(),
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
                "(is the sudoers rule from `hpcportal runas install` in place?)"
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
        """Read ``length`` bytes at ``offset`` as the user: (description, data)."""
        request = {"op": "read-file", "path": path, "offset": offset, "length": length}
        done = self.run(username, request)
        first, _, data = done.stdout.partition(b"\n")
        answer = json.loads(first) if first else {"ok": False, "message": done.stderr}
        if not answer.get("ok"):
            raise helper_error(answer, path)
        return answer, data


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
    """The helper's error as the typed error a person can act on."""
    kind = answer.get("error")
    message = str(answer.get("message") or "failed")
    where = f" ({path})" if isinstance(path, str) else ""
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
    return PortalError(f"Acting as the user failed{where}: {message}.")
