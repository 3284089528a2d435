"""The one private executor of Slurm commands.

Commands run as argv lists (never a shell string), from a fixed allow-list, with a
timeout, a clean environment that carries only ``SLURM_CONF``, and optionally as
another Unix user through :mod:`hpcportal.runas`. Failures become typed errors
here, so callers never parse stderr. Every call is counted by command, both for
``/metrics`` and for tests that prove the snapshot's Slurm load is constant.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from hpcportal.config import Settings
from hpcportal.errors import (
    SlurmError,
    SlurmInvalidRequest,
    SlurmNotFound,
    SlurmPermissionDenied,
    SlurmTimeout,
    SlurmUnreachable,
)
from hpcportal.runas import RunAsRefused, wrap_argv

log = logging.getLogger(__name__)

ALLOWED_COMMANDS = frozenset(
    {"squeue", "sinfo", "sacct", "scontrol", "sshare", "sacctmgr", "sbatch", "scancel"}
)

SLURM_CALLS = PromCounter(
    "hpcportal_slurm_calls", "Slurm commands run by the portal", ["command", "outcome"]
)
SLURM_SECONDS = Histogram(
    "hpcportal_slurm_command_seconds", "Duration of Slurm commands", ["command"]
)

# stderr fragments -> error type. Checked in order; the first match wins.
_UNREACHABLE = (
    "unable to contact slurm controller",
    "connection refused",
    "socket timed out",
    "slurm_persist_conn_open",
    "slurmdbd",
    "zero bytes were transmitted or received",
    "munge",
)
_PERMISSION = ("access/permission denied", "invalid user id", "not authorized", "permission denied")
_NOT_FOUND = ("invalid job id specified", "invalid job id", "not found")


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float


class SlurmExecutor:
    """Runs Slurm commands. One instance per process; thread-safe."""

    def __init__(
        self,
        *,
        slurm_conf: Path | None = None,
        bin_dir: Path | None = None,
        timeout: float = 30.0,
        min_uid: int = 1000,
    ) -> None:
        self.slurm_conf = slurm_conf
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.min_uid = min_uid
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SlurmExecutor:
        return cls(
            slurm_conf=settings.slurm_conf,
            bin_dir=settings.slurm_bin_dir,
            timeout=settings.slurm_timeout,
            min_uid=settings.min_uid,
        )

    def environment(self) -> dict[str, str]:
        """The whole environment a Slurm command sees: nothing of the portal's own."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
        }
        if self.slurm_conf is not None:
            env["SLURM_CONF"] = str(self.slurm_conf)
        return env

    def run(
        self,
        command: str,
        args: Sequence[str],
        *,
        as_user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run one Slurm command and return its output, or raise a typed ``SlurmError``."""
        if command not in ALLOWED_COMMANDS:
            raise ValueError(f"{command!r} is not a Slurm command the portal runs")
        binary = str(self.bin_dir / command) if self.bin_dir else command
        argv = [binary, *args]
        if as_user is not None:
            try:
                argv = wrap_argv(as_user, argv, min_uid=self.min_uid)
            except RunAsRefused as exc:
                raise SlurmPermissionDenied(f"Cannot act as that user: {exc}.") from exc
        with self._lock:
            self.calls[command] += 1
        limit = timeout or self.timeout
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                timeout=limit,
                env=self.environment(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            SLURM_CALLS.labels(command, "timeout").inc()
            raise SlurmTimeout(f"Slurm did not answer within {limit:g} s ({command}).") from exc
        except FileNotFoundError as exc:
            SLURM_CALLS.labels(command, "missing").inc()
            raise SlurmUnreachable(f"The Slurm command {command!r} is not installed here.") from exc
        seconds = time.perf_counter() - started
        SLURM_SECONDS.labels(command).observe(seconds)
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        result = CommandResult(tuple(argv), proc.returncode, proc.stdout, stderr, seconds)
        if proc.returncode != 0:
            SLURM_CALLS.labels(command, "error").inc()
            raise classify_failure(command, stderr)
        SLURM_CALLS.labels(command, "ok").inc()
        return result


def classify_failure(command: str, stderr: str) -> SlurmError:
    """Turn a failed command's stderr into the typed error a person can act on."""
    text = stderr.lower()
    reason = _last_line(stderr) or f"{command} failed"
    if any(s in text for s in _PERMISSION):
        return SlurmPermissionDenied(f"Slurm refused: {reason}")
    if any(s in text for s in _NOT_FOUND):
        return SlurmNotFound(f"Slurm does not know that: {reason}")
    if any(s in text for s in _UNREACHABLE):
        return SlurmUnreachable(f"Slurm is not reachable: {reason}")
    return SlurmInvalidRequest(f"Slurm rejected the request: {reason}")


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("error: ", "slurm_load_jobs error: "):
        if prefix in line:
            line = line.split(prefix, 1)[1]
    return line[:300]
