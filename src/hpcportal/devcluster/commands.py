"""Running external programs: argv lists, explicit timeouts, readable failures.

Every program the dev cluster calls goes through ``run`` so a hung Slurm client can
never block ``up`` forever and a failure always names the command and its output.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hpcportal.devcluster.errors import DevClusterError

DEFAULT_TIMEOUT = 60.0


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and capture its output; raise ``DevClusterError`` on failure if ``check``.

    A timeout or a missing program is always an error, because callers cannot
    meaningfully continue after either.
    """
    try:
        result = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DevClusterError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise DevClusterError(f"`{argv[0]}` is not installed") from exc
    if check and result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise DevClusterError(
            f"`{' '.join(argv)}` failed with exit code {result.returncode}", output
        )
    return result


def try_run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 10,
) -> subprocess.CompletedProcess[str] | None:
    """Like ``run`` without raising: None if the program is missing or hangs.

    For probes, where "no answer" is a normal outcome rather than an error.
    """
    try:
        return run(argv, env=env, input_text=input_text, timeout=timeout, check=False)
    except DevClusterError:
        return None


def succeeds(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 10
) -> bool:
    """True when ``argv`` exits 0 in time."""
    result = try_run(argv, env=env, timeout=timeout)
    return result is not None and result.returncode == 0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, headed by its path; empty if unreadable."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    last = text.splitlines()[-lines:]
    if not last:
        return ""
    return f"--- {path} (last {len(last)} lines) ---\n" + "\n".join(last)


def tails(paths: Sequence[Path], lines: int = 25) -> str:
    """The tails of several logs joined together, skipping missing ones."""
    return "\n".join(t for t in (tail(p, lines) for p in paths) if t)
