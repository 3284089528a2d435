"""Daemons known by their pid files: is it alive, start it, stop it.

The dev cluster must never touch a process it did not start, so a daemon counts as
ours only if the pid in *our* pid file is alive and its command line is the program
we expect (a recycled pid that now belongs to something else is ignored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcportal.devcluster.commands import tails, wait_until
from hpcportal.devcluster.errors import DaemonStartError, DevClusterError

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def read_pid(pid_file: Path) -> int | None:
    """The pid written in ``pid_file``, or None if it is missing or garbage."""
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def process_argv(pid: int) -> list[str] | None:
    """The command line of a live (non-zombie) process, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The state letter follows the parenthesised command name, which may contain spaces.
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def argv_matches(argv: Sequence[str], program: str, args: Sequence[str]) -> bool:
    """True if ``argv`` runs ``program`` (by basename) with every one of ``args``."""
    if not argv or os.path.basename(argv[0]) != program:
        return False
    return all(arg in argv[1:] for arg in args)


@dataclass(frozen=True)
class Daemon:
    """A background program of the cluster, identified by its pid file and command line.

    ``argv`` must daemonize (fork and exit) and make the daemon write ``pid_file``.
    ``match_args`` tell our slurmd for node X from the one for node Y.
    """

    name: str
    argv: tuple[str, ...]
    pid_file: Path
    program: str
    log_files: tuple[Path, ...]
    output_file: Path
    match_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()

    def pid(self) -> int | None:
        """The pid of our running daemon, or None."""
        pid = read_pid(self.pid_file)
        if pid is None:
            return None
        argv = process_argv(pid)
        if argv is None or not argv_matches(argv, self.program, self.match_args):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def log_tail(self) -> str:
        return tails([*self.log_files, self.output_file])

    def start(self) -> int:
        """Start the daemon unless it runs; return its pid once its pid file shows it alive."""
        start_all([self])
        pid = self.pid()
        assert pid is not None
        return pid

    def launch(self) -> None:
        """Run ``argv`` with output to a file, never a pipe a forked daemon could hold open."""
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with self.output_file.open("ab") as out:
            try:
                code = subprocess.run(
                    list(self.argv),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    timeout=START_TIMEOUT,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired as exc:
                raise DevClusterError(
                    f"starting {self.name} hung for {START_TIMEOUT:.0f} s", self.log_tail()
                ) from exc
        if code != 0:
            raise DevClusterError(
                f"{self.name} failed to start (`{' '.join(self.argv)}` exited {code})",
                self.log_tail(),
            )

    def stop(self) -> bool:
        """SIGTERM our daemon, wait for it to exit (SIGKILL after a timeout); True if it ran."""
        return bool(stop_all([self]))


def port_in_use(port: int) -> bool:
    """True if something accepts TCP connections on ``port`` of this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def check_ports_free(daemons: Sequence[Daemon]) -> None:
    """Refuse to start daemons whose ports someone else holds.

    Typically another dev cluster directory is still up; starting ours next to it
    would fail half-way, after resetting the shared database password under it.
    """
    busy = [
        f"{daemon.name} (port {port})"
        for daemon in daemons
        if not daemon.is_running()
        for port in daemon.ports
        if port_in_use(port)
    ]
    if busy:
        raise DevClusterError(
            "ports needed by this dev cluster are in use: "
            + ", ".join(busy)
            + ". Is another dev cluster (another --dir) or Slurm running? Stop it first."
        )


def start_all(daemons: Sequence[Daemon]) -> list[str]:
    """Launch every daemon that is not running, then wait for all; names of those started.

    Launching all before waiting makes six slurmds start about as fast as one, and one
    that fails does not keep the others from starting: ``DaemonStartError`` names it.
    """
    pending = [d for d in daemons if not d.is_running()]
    failures: dict[str, DevClusterError] = {}
    for daemon in pending:
        daemon.pid_file.unlink(missing_ok=True)
        try:
            daemon.launch()
        except DevClusterError as error:
            failures[daemon.name] = error
    for daemon in pending:
        if daemon.name in failures:
            continue
        if wait_until(daemon.is_running, START_TIMEOUT, interval=0.2):
            log.info("%s started (pid %s)", daemon.name, daemon.pid())
            continue
        failures[daemon.name] = DevClusterError(
            f"{daemon.name} did not start within {START_TIMEOUT:.0f} s", daemon.log_tail()
        )
    if failures:
        raise DaemonStartError(
            list(failures),
            "; ".join(error.message for error in failures.values()),
            "\n".join(error.details for error in failures.values() if error.details),
        )
    return [d.name for d in pending]


def terminate(pid: int, name: str, *, signalled: bool = False) -> None:
    """Make ``pid`` exit: SIGTERM (unless ``signalled`` already), then SIGKILL if it lingers."""

    def gone() -> bool:
        return process_argv(pid) is None

    if not signalled:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if wait_until(gone, STOP_TIMEOUT, interval=0.2):
        return
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, pid, STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(gone, 10, interval=0.2):
        raise DevClusterError(f"{name} (pid {pid}) did not exit even after SIGKILL")


def stop_all(daemons: Sequence[Daemon]) -> list[str]:
    """Signal every running daemon at once, then wait for each; names of those stopped.

    Signalling first and waiting afterwards makes stopping six slurmds as fast as one.
    """
    running = [(d, pid) for d in daemons if (pid := d.pid()) is not None]
    for _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for daemon, pid in running:
        terminate(pid, daemon.name, signalled=True)
        daemon.pid_file.unlink(missing_ok=True)
        log.info("%s stopped (pid %d)", daemon.name, pid)
    return [d.name for d, _ in running]
