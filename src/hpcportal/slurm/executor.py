"""The one private executor of Slurm commands.

Commands run as argv lists (never a shell string), from a fixed allow-list, with a
timeout, a clean environment that carries only ``SLURM_CONF``, and optionally as
another Unix user through :mod:`hpcportal.runas` (which runs the clients of the same
``bin_dir``). Failures become typed errors
here, so callers never parse stderr. Every call is counted by command, both for
``/metrics`` and for tests that prove the snapshot's Slurm load is constant.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from hpcportal.config import Settings
from hpcportal.errors import (
    Forbidden,
    SlurmError,
    SlurmInvalidRequest,
    SlurmNotFound,
    SlurmPermissionDenied,
    SlurmRateLimited,
    SlurmTimeout,
    SlurmUnreachable,
)
from hpcportal.runas import RunAs, RunAsTimeout
from hpcportal.slurm.cluster import SlurmCluster

log = logging.getLogger(__name__)

ALLOWED_COMMANDS = frozenset(
    {
        "squeue",
        "sinfo",
        "sacct",
        "scontrol",
        "sshare",
        "sacctmgr",
        "sbatch",
        "scancel",
        "sdiag",
        "sstat",
    }
)

SLURM_CALLS = PromCounter(
    "hpcportal_slurm_calls", "Slurm commands run by the portal", ["command", "outcome"]
)
SLURM_SECONDS = Histogram(
    "hpcportal_slurm_command_seconds", "Duration of Slurm commands", ["command"]
)

# stderr fragments -> error type. Checked in order; the first match wins.
# A broken conversation is "unreachable", never "invalid request": for sbatch it means
# Slurm may have created the job (services.submit keeps the Idempotency-Key then).
_UNREACHABLE = (
    "unable to contact slurm controller",
    "connection refused",
    "socket timed out",
    "communication connection failure",
    "message send failure",
    "message receive failure",
    "communication shutdown failure",
    "slurm_persist_conn_open",
    "slurmdbd",
    "zero bytes were transmitted or received",
    "munge",
)
# slurmctld's rl_enable (23.02+): ESLURM_RATELIMITED and its sibling both start so.
_RATE_LIMITED = ("rate limit exceeded",)
_PERMISSION = (
    "access/permission denied",
    "invalid user id",
    "not authorized",
    "permission denied",
    # sacctmgr, when a coordinator modifies outside their accounts (or a user at all)
    "doesn't have privilege",
    "only admins/operators",  # sacctmgr 24.11+: "Only admins/operators/coordinators can ..."
)
_NOT_FOUND = ("invalid job id specified", "invalid job id", "not found")
_ERROR_PREFIX = re.compile(r"\berror:\s*")


@dataclass(frozen=True, slots=True)
class Ran:
    """One command the executor started: its argv as run and whom it ran as (None:
    the portal's own user). Kept so what ran can be compared with what was shown."""

    argv: tuple[str, ...]
    as_user: str | None


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float


class SlurmExecutor:
    """Runs the Slurm commands of one cluster. One instance per cluster; thread-safe.

    The cluster is given as a ``SlurmCluster`` value, or as ``slurm_conf`` and
    ``bin_dir`` for a cluster called "default".
    """

    def __init__(
        self,
        *,
        cluster: SlurmCluster | None = None,
        slurm_conf: Path | None = None,
        bin_dir: Path | None = None,
        timeout: float = 30.0,
        runas: RunAs | None = None,
    ) -> None:
        if cluster is None:
            cluster = SlurmCluster(slurm_conf=slurm_conf, bin_dir=bin_dir)
        elif slurm_conf is not None or bin_dir is not None:
            raise ValueError("give either a cluster or its slurm_conf and bin_dir, not both")
        self.cluster = cluster
        self.slurm_conf = slurm_conf = cluster.slurm_conf
        self.bin_dir = cluster.bin_dir
        self.timeout = timeout
        self.runas = runas or RunAs(slurm_conf=slurm_conf, slurm_bin_dir=bin_dir)
        self.calls: Counter[str] = Counter()
        #: The last commands started, newest last (admin plans are checked against it).
        self.ran: deque[Ran] = deque(maxlen=256)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SlurmExecutor:
        return cls(
            cluster=SlurmCluster(slurm_conf=settings.slurm_conf, bin_dir=settings.slurm_bin_dir),
            timeout=settings.slurm_timeout,
            runas=RunAs(
                method=settings.runas_method,
                helper=settings.runas_helper,
                min_uid=settings.min_uid,
                slurm_conf=settings.slurm_conf,
                slurm_bin_dir=settings.slurm_bin_dir,
                deny_users=settings.runas_deny_users,
                group=settings.runas_group,
            ),
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
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run one Slurm command and return its output, or raise a typed ``SlurmError``.

        With ``as_user`` the command runs as that user through the run-as boundary,
        with ``env`` as the only variables beyond the helper's clean set.
        """
        if command not in ALLOWED_COMMANDS:
            raise ValueError(f"{command!r} is not a Slurm command the portal runs")
        with self._lock:
            self.calls[command] += 1
            self.ran.append(Ran((command, *args), as_user))
        limit = timeout or self.timeout
        started = time.perf_counter()
        if as_user is not None:
            done = self._run_as(as_user, command, args, stdin, env or {}, limit)
            returncode, stdout, stderr, argv = done
        else:
            argv = (str(self.bin_dir / command) if self.bin_dir else command, *args)
            returncode, stdout, stderr = self._run_here(command, list(argv), stdin, limit)
        seconds = time.perf_counter() - started
        SLURM_SECONDS.labels(command).observe(seconds)
        result = CommandResult(tuple(argv), returncode, stdout, stderr, seconds)
        if returncode != 0:
            SLURM_CALLS.labels(command, "error").inc()
            raise classify_failure(command, stderr)
        SLURM_CALLS.labels(command, "ok").inc()
        return result

    def _run_here(
        self, command: str, argv: list[str], stdin: bytes | None, limit: float
    ) -> tuple[int, bytes, str]:
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
        return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()

    def _run_as(
        self,
        user: str,
        command: str,
        args: Sequence[str],
        stdin: bytes | None,
        env: dict[str, str],
        limit: float,
    ) -> tuple[int, bytes, str, tuple[str, ...]]:
        argv = (command, *args)
        request = {"op": "slurm", "argv": list(argv), "env": env}
        try:
            done = self.runas.run(user, request, payload=stdin or b"", timeout=limit)
        except RunAsTimeout as exc:
            SLURM_CALLS.labels(command, "timeout").inc()
            raise SlurmTimeout(f"Slurm did not answer within {limit:g} s ({command}).") from exc
        if done.returncode == 126 and done.stdout.startswith(b"{"):
            refusal = json.loads(done.stdout.partition(b"\n")[0])
            raise Forbidden(f"Refused by the run-as boundary: {refusal.get('message')}.")
        return done.returncode, done.stdout, done.stderr, argv


def classify_failure(command: str, stderr: str) -> SlurmError:
    """Turn a failed command's stderr into the typed error a person can act on."""
    text = stderr.lower()
    reason = _last_line(stderr) or f"{command} failed"
    if any(s in text for s in _RATE_LIMITED):
        return SlurmRateLimited(f"Slurm is limiting requests, retry shortly: {reason}")
    if any(s in text for s in _PERMISSION):
        # The line that says so (26.05's sacctmgr adds "Getting response to message
        # type: DBD_FINI" after its "Access/permission denied").
        said = [ln for ln in stderr.splitlines() if any(s in ln.lower() for s in _PERMISSION)]
        return SlurmPermissionDenied(f"Slurm refused: {_last_line(said[-1])}")
    if text.endswith(": no error"):
        # sacctmgr's delete that matched nothing ("Nothing deleted" on stdout) names
        # slurmdbd's call and "No error": not an unreachable slurmdbd.
        return SlurmInvalidRequest(f"Slurm changed nothing: {reason}")
    if any(s in text for s in _NOT_FOUND):
        return SlurmNotFound(f"Slurm does not know that: {reason}")
    if any(s in text for s in _UNREACHABLE):
        return SlurmUnreachable(f"Slurm is not reachable: {reason}")
    return SlurmInvalidRequest(f"Slurm rejected the request: {reason}")


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return ""
    # "sbatch: error: X", "slurm_load_jobs error: X"; 26.05's scontrol drops the space
    # ("slurm_suspend error:Invalid job id specified").
    line = _ERROR_PREFIX.split(lines[-1], maxsplit=1)[-1]
    return line[:300]
