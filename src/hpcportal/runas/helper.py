"""hpcportal-runas: the one program the portal runs as another Unix user.

It is started *as the target user* (``sudo -n -u USER hpcportal-runas`` for a portal
running as its service account, ``runuser -u USER -- ...`` for one running as root),
so it never holds more rights than that user: the kernel and Slurm decide what it
may do. It performs one operation from a fixed list and exits.

Protocol: one JSON line on stdin (the request), optionally followed by raw bytes
(the payload: a batch script, an uploaded file). Operations:

- ``slurm``: run an allow-listed Slurm command with the given argv, a clean
  environment and the payload as stdin; its stdout, stderr and exit code are the
  command's own. The command is looked up in ``SLURM_PATH`` (fixed at install), then
  the system folders.
- ``terminal``: the user's login shell on a new pseudo-terminal, started in ``path``
  (entered as the user, so the kernel decides; by default the home folder) with a
  fresh environment and the user's own groups (checked). It prints one JSON line,
  then relays: stdin carries frames (1-byte kind, 4-byte big-endian length, bytes):
  ``d`` bytes typed into the terminal, ``w`` a window size (rows, columns as two
  2-byte numbers); stdout carries what the terminal prints. It ends when the shell
  ends (exit code the shell's) or when stdin closes or SIGTERM comes (the shell's
  session gets SIGHUP, as when an SSH connection drops).

Every file operation (``helper_*.py``, pasted in below) speaks one path protocol: it
names a root and a path inside it (``{"root": "/home/alice", "path": "data/x.csv"}``), walks
from the root's descriptor and never follows a link out of the root. There is no
operation on an absolute path. The file operations: ``list`` (also a path's
description), ``read`` (a range, or from an offset, streamed), ``write`` (atomic:
create, replace with an etag check or ``replace``; a sized or a framed payload),
``mkdir`` (with ``room_for``), ``rename``/``move``, ``copy``, ``chmod``, ``delete``
(to the trash, or for good), ``trash``, ``restore``, ``zip`` (streamed), ``search``
(JSON lines), ``usage``, ``roots`` and ``upload`` (the steps of a resumable upload).

Standard library only: it is installed root-owned by ``hpcportal runas install``
and named in the sudoers rule.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import re
import select
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from typing import Any

#: Every operation this program performs; anything else is refused. ``slurm`` and
#: ``terminal`` are below; the file operations (all root-relative) in the helper_*.py
#: modules pasted in below (helper_files.FILE_OPERATIONS names each one's function).
OPERATIONS = frozenset(
    {
        "slurm", "terminal",
        "list", "read", "write", "mkdir", "rename", "move", "copy", "chmod", "delete",
        "restore", "trash", "zip", "search", "usage", "roots", "upload",
    }
)  # fmt: skip
MIN_UID = 1000  # replaced by `hpcportal runas install --min-uid`
#: Accounts never acted as, whatever their shell: Slurm's SlurmUser and SlurmdUser and the
#: site's deny list, and the UIDs they had; fixed in this text by `hpcportal runas
#: install` (or by the portal under runuser), never by a request.
DENY_USERS: frozenset[str] = frozenset()
DENY_UIDS: frozenset[int] = frozenset()
#: A root-owned folder of Slurm clients searched before TRUSTED_PATH; fixed in this text
#: by `hpcportal runas install --slurm-bin-dir` (or by the portal under runuser), never
#: by a request. Empty: the system's Slurm.
SLURM_PATH = ""
TRUSTED_PATH = "/usr/local/bin:/usr/bin:/bin"
#: sacctmgr: administrators' QoS/account changes, run as them so slurmdbd decides.
SLURM_COMMANDS = frozenset({"sbatch", "scancel", "scontrol", "squeue", "sacct", "sacctmgr"})
SCONTROL_VERBS = frozenset({"hold", "release", "requeue", "write", "show"})
#: The one ``scontrol update`` the portal asks for: more time for a session's job.
SCONTROL_EXTEND = re.compile(r"^JobId=\d{1,12}$"), re.compile(r"^TimeLimit=\+\d{1,6}$")
#: Administrators' node changes (slurm/admin_actions.py), run as them so slurmctld
#: decides: ``scontrol update NodeName=NODES State=DRAIN|DOWN|RESUME [Reason=...]`` and
#: ``scontrol reboot [ASAP] nextstate=RESUME|DOWN reason=... NODES``.
NODE_LIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-\[\],]{0,499}$")
NODE_STATE = re.compile(r"^State=(?:DRAIN|DOWN|RESUME)$")
NODE_REASON = re.compile(r"^[Rr]eason=[^\x00-\x1f\x7f]{1,200}$")
#: Administrators' reservations (slurm/admin_reservations.py), run as them so slurmctld
#: decides: ``scontrol create reservation ReservationName=N K=V...``, ``scontrol update
#: ReservationName=N K=V...`` and ``scontrol delete ReservationName=N``; each key at most
#: once, each value of its own shape.
RESV_NAME = re.compile(r"^ReservationName=[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESV_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
_RESV_NAMES = r"-?[a-z_][a-z0-9_.-]{0,31}(?:,-?[a-z_][a-z0-9_.-]{0,31}){0,199}"
_RESV_FLAG = (
    r"-?(?:MAINT|IGNORE_JOBS|OVERLAP|FLEX|DAILY|WEEKLY|WEEKDAY|WEEKEND|MAGNETIC"
    r"|NO_HOLD_JOBS_AFTER)"
)
RESV_VALUES = {
    "StartTime": re.compile(rf"^(?:now|{_RESV_TIME})$"),
    "EndTime": re.compile(rf"^{_RESV_TIME}$"),
    "Duration": re.compile(r"^[1-9]\d{0,6}$"),
    "Nodes": NODE_LIST,
    "NodeCnt": re.compile(r"^[1-9]\d{0,5}$"),
    "Users": re.compile(rf"^{_RESV_NAMES}$"),
    "Accounts": re.compile(rf"^{_RESV_NAMES}$"),
    "PartitionName": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    "Flags": re.compile(rf"^{_RESV_FLAG}(?:,{_RESV_FLAG}){{0,15}}$"),
}
DISABLED_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})
NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
FORBIDDEN_ENV = ("LD_", "SLURM_CONF", "PATH", "BASH_ENV", "ENV", "PYTHON", "HPCPORTAL_RUNAS")

# The file operations live in the helper_*.py modules (standard library only, one
# concern each; helper_files.py names the function of each operation). The portal
# pastes their source, in the order of assemble.HELPER_MODULES, over the imports
# between these two markers when it builds the helper (assemble.helper_source), so the
# program run as the user is one self-contained file; the imports serve tests and mypy.
# >>> helper_files
from hpcportal.runas.helper_files import FILE_OPERATIONS  # noqa: E402
from hpcportal.runas.helper_walk import Refused, Stream  # noqa: E402

# <<< helper_files


def fail(message: str, code: int = 1, error: str = "error") -> None:
    """Answer with an error line and exit; mid-stream, on stderr (stdout is data)."""
    line = json.dumps({"ok": False, "error": error, "message": message}) + "\n"
    if Stream.started:
        sys.stderr.write(line)
        sys.stderr.flush()
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
    sys.exit(code)


def check_identity() -> pwd.struct_passwd:
    """Refuse to act as root, a system account, a denied one or a disabled one."""
    user = pwd.getpwuid(os.getuid())
    if user.pw_uid == 0 or user.pw_uid < MIN_UID:
        raise Refused(f"refusing to run as system account {user.pw_name}")
    if user.pw_name in DENY_USERS or user.pw_uid in DENY_UIDS:
        raise Refused(f"refusing to run as {user.pw_name}: a Slurm daemon or denied account")
    if not NAME.fullmatch(user.pw_name) or user.pw_shell in DISABLED_SHELLS:
        raise Refused(f"refusing to run as {user.pw_name}")
    return user


def read_request() -> dict[str, Any]:
    """Read the request line byte by byte, so none of the payload that follows is
    buffered here: ``slurm`` hands file descriptor 0 itself to the child."""
    line = bytearray()
    while len(line) < 1024 * 1024:
        byte = os.read(0, 1)
        if not byte or byte == b"\n":
            break
        line += byte
    request = json.loads(line)
    if not isinstance(request, dict) or request.get("v") != 1:
        raise Refused("malformed request")
    return request


def absolute(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise Refused("paths must be absolute")
    return path


def command_path() -> str:
    """PATH for Slurm commands: SLURM_PATH first, if only root can still change it."""
    if not SLURM_PATH:
        return TRUSTED_PATH
    try:
        info = os.stat(SLURM_PATH)
    except FileNotFoundError:
        raise Refused(f"the Slurm folder {SLURM_PATH} is missing") from None
    if info.st_uid != 0 or info.st_mode & 0o022 or not stat.S_ISDIR(info.st_mode):
        raise Refused(f"the Slurm folder {SLURM_PATH} is open to others than root")
    return f"{SLURM_PATH}:{TRUSTED_PATH}"


def child_env(user: pwd.struct_passwd, request: dict[str, Any]) -> dict[str, str]:
    """A fresh environment: nothing inherited but what is named here."""
    env = {
        "PATH": command_path(),
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": user.pw_shell,
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }
    conf = request.get("slurm_conf")
    if conf:
        env["SLURM_CONF"] = absolute(conf)
    for name, value in (request.get("env") or {}).items():
        if not ENV_NAME.fullmatch(name) or name.startswith(FORBIDDEN_ENV):
            raise Refused(f"environment variable {name} is not allowed")
        if not isinstance(value, str) or "\0" in value:
            raise Refused(f"environment variable {name} has a bad value")
        env[name] = value
    return env


def _scontrol_verb(argv: list[str]) -> bool:
    return len(argv) >= 2 and argv[1] in SCONTROL_VERBS


def _scontrol_extend(argv: list[str]) -> bool:
    """``scontrol update JobId=N TimeLimit=+M`` and nothing else of ``update``."""
    job, limit = SCONTROL_EXTEND
    return (
        len(argv) == 4
        and argv[1] == "update"
        and bool(job.fullmatch(argv[2]))
        and bool(limit.fullmatch(argv[3]))
    )


def _scontrol_node(argv: list[str]) -> bool:
    """A node state change or reboot request of the admin console, nothing else."""
    if len(argv) in (4, 5) and argv[1] == "update" and argv[2].startswith("NodeName="):
        if not NODE_LIST.fullmatch(argv[2].removeprefix("NodeName=")):
            return False
        reason_ok = len(argv) == 4 or bool(NODE_REASON.fullmatch(argv[4]))
        return bool(NODE_STATE.fullmatch(argv[3])) and reason_ok
    if argv[1:2] != ["reboot"]:
        return False
    rest = argv[3:] if argv[2:3] == ["ASAP"] else argv[2:]
    return (
        len(rest) == 3
        and rest[0] in ("nextstate=RESUME", "nextstate=DOWN")
        and bool(NODE_REASON.fullmatch(rest[1]))
        and bool(NODE_LIST.fullmatch(rest[2]))
    )


def _scontrol_reservation(argv: list[str]) -> bool:
    """A reservation create, update or delete of the admin console, nothing else."""
    if argv[1:2] == ["delete"]:
        return len(argv) == 3 and bool(RESV_NAME.fullmatch(argv[2]))
    if argv[1:3] == ["create", "reservation"]:
        rest = argv[3:]
    elif argv[1:2] == ["update"]:
        rest = argv[2:]
    else:
        return False
    if not rest or not RESV_NAME.fullmatch(rest[0]) or len(rest) > 1 + len(RESV_VALUES):
        return False
    seen: set[str] = set()
    for arg in rest[1:]:
        key, sep, value = arg.partition("=")
        pattern = RESV_VALUES.get(key)
        if not sep or pattern is None or key in seen or not pattern.fullmatch(value):
            return False
        seen.add(key)
    return bool(seen) if argv[1] == "update" else "StartTime" in seen


def check_slurm_argv(argv: Any) -> list[str]:
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise Refused("argv must be a list of strings")
    if argv[0] not in SLURM_COMMANDS:
        raise Refused(f"{argv[0]!r} is not a command this helper runs")
    scontrol_ok = (
        _scontrol_verb(argv)
        or _scontrol_extend(argv)
        or _scontrol_node(argv)
        or _scontrol_reservation(argv)
    )
    if argv[0] == "scontrol" and not scontrol_ok:
        raise Refused("that scontrol command is not allowed")
    if any("\0" in a for a in argv):
        raise Refused("argv contains a NUL byte")
    return argv


def op_slurm(user: pwd.struct_passwd, request: dict[str, Any]) -> int:
    argv = check_slurm_argv(request.get("argv"))
    env = child_env(user, request)
    proc = subprocess.run(argv, stdin=0, env=env, check=False)
    return proc.returncode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: The terminal the browser emulates (xterm.js), and the bounds of one terminal frame.
TERMINAL_TYPE = "xterm-256color"
TERMINAL_READ = 64 * 1024
TERMINAL_FRAME = 1024 * 1024
#: Typed bytes the shell has not taken yet; past this, stdin is not read until it has.
TERMINAL_PENDING = 4 * 1024 * 1024


def check_own_groups(user: pwd.struct_passwd) -> None:
    """Refuse unless this process holds exactly the user's groups (sudo and runuser set
    them with initgroups): the shell gets the user's rights, no more and no fewer."""
    expected = set(os.getgrouplist(user.pw_name, user.pw_gid))
    held = set(os.getgroups()) | {os.getegid()}
    if os.getegid() != user.pw_gid or held != expected:
        raise Refused("the helper does not hold exactly the user's groups")


def set_window(fd: int, rows: int, cols: int) -> None:
    """The terminal's size; on the master side the kernel signals SIGWINCH to the shell."""
    rows, cols = min(max(rows, 1), 1000), min(max(cols, 1), 1000)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def start_shell(user: pwd.struct_passwd, request: dict[str, Any]) -> tuple[int, int]:
    """Fork the user's login shell on a new pseudo-terminal: (pid, master descriptor).

    The folder is entered here, as the user, so one they cannot enter is refused by
    the kernel (EACCES) before any shell starts.
    """
    os.chdir(absolute(request.get("path") or user.pw_dir))
    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": user.pw_shell,
        "PATH": command_path(),
        "TERM": TERMINAL_TYPE,
        "LANG": "C.UTF-8",
    }
    if request.get("slurm_conf"):
        env["SLURM_CONF"] = absolute(request["slurm_conf"])
    shell = user.pw_shell or "/bin/sh"
    master, slave = os.openpty()
    set_window(slave, int(request.get("rows", 24)), int(request.get("cols", 80)))
    pid = os.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the slave
        try:
            os.close(master)
            os.login_tty(slave)
            # Nothing else the helper was handed (copies of the portal's pipes) may
            # reach the shell: a job it leaves behind would hold the portal's pipe.
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM):
                signal.signal(number, signal.SIG_DFL)  # Python ignores some; exec keeps that
            os.execve(shell, ["-" + os.path.basename(shell)], env)  # noqa: S606 ("-": login)
        finally:
            os._exit(127)
    os.close(slave)
    return pid, master


def take_frames(buffer: bytearray, pending: bytearray, master: int) -> None:
    """Consume the whole frames at the start of ``buffer`` (see ``terminal`` above)."""
    while len(buffer) >= 5:
        kind, size = buffer[0], int.from_bytes(buffer[1:5], "big")
        if size > TERMINAL_FRAME:
            raise Refused("malformed terminal frame")
        if len(buffer) < 5 + size:
            return
        body = bytes(buffer[5 : 5 + size])
        del buffer[: 5 + size]
        if kind == ord("d"):
            pending += body
        elif kind == ord("w") and size == 4:
            rows, cols = struct.unpack(">HH", body)
            set_window(master, rows, cols)
        else:
            raise Refused("malformed terminal frame")


def _drain(master: int) -> None:
    """Pass on what the terminal still holds (the shell's last words)."""
    with contextlib.suppress(OSError):  # BlockingIOError: empty; EIO: closed
        while data := os.read(master, TERMINAL_READ):
            _write_all(1, data)


def relay(master: int, pid: int) -> int | None:
    """Copy frames from stdin into the terminal and its output to stdout, until the
    shell ends (its wait status; a job it left behind may still hold the terminal),
    the terminal closes or stdin does (the portal left): then None."""
    os.set_blocking(master, False)
    buffer, pending = bytearray(), bytearray()
    while True:
        readers = [master] + ([0] if len(pending) < TERMINAL_PENDING else [])
        readable, writable, _ = select.select(readers, [master] if pending else [], [], 1.0)
        if writable and pending:
            with contextlib.suppress(BlockingIOError):
                del pending[: os.write(master, pending)]
        if master in readable:
            try:
                data = os.read(master, TERMINAL_READ)
            except BlockingIOError:
                data = None  # nothing after all; not an end
            except OSError:
                return None  # EIO: the terminal's last user closed it
            if data == b"":
                return None
            if data:
                _write_all(1, data)
        if 0 in readable:
            chunk = os.read(0, TERMINAL_READ)
            if not chunk:
                return None
            buffer += chunk
            take_frames(buffer, pending, master)
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            _drain(master)
            return status


def hang_up(pid: int) -> int:
    """SIGHUP to the shell's process group (as a dropped SSH connection does), a
    moment for it to end, then SIGKILL; the shell's wait status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGHUP)
    for _ in range(20):  # within the 3 s the portal gives before SIGKILL
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            return status
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def op_terminal(user: pwd.struct_passwd, request: dict[str, Any]) -> int:
    """The ``terminal`` operation: start, answer, relay, hang up; the shell's exit code."""
    check_own_groups(user)
    pid, master = start_shell(user, request)

    def stop(*_: object) -> None:
        raise SystemExit(143)  # the portal ends the terminal: hang up below

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"ok": True, "pid": pid, "cwd": os.getcwd(), "shell": user.pw_shell}))
    sys.stdout.flush()
    Stream.started = True
    status = None
    try:
        status = relay(master, pid)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if status is None:
            status = hang_up(pid)
        os.close(master)
    return os.waitstatus_to_exitcode(status)


ERRNO_NAMES = {
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.ENOENT: "not_found",
    errno.EEXIST: "exists",
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "quota",
    errno.ELOOP: "symlink",
    errno.ENOTDIR: "not_found",
    errno.EISDIR: "is_directory",
    errno.ENOTEMPTY: "not_empty",
    errno.EXDEV: "cross_device",
    errno.EROFS: "read_only",
    errno.ENAMETOOLONG: "name_too_long",
    errno.EINVAL: "invalid",
    errno.EBUSY: "busy",
}


def main() -> None:
    try:
        user = check_identity()
        os.chdir(user.pw_dir if os.path.isdir(user.pw_dir) else "/")
        request = read_request()
        op = request.get("op")
        if not isinstance(op, str) or op not in OPERATIONS:
            raise Refused(f"unknown operation {op!r}")
        if op == "slurm":
            sys.exit(op_slurm(user, request))
        if op == "terminal":
            sys.exit(op_terminal(user, request))
        if "umask" in request:
            os.umask(int(request["umask"]) & 0o777)
        FILE_OPERATIONS[op](request)
    except BrokenPipeError:
        os._exit(141)  # the portal stopped reading (a cancelled download): nothing to say
    except Refused as exc:
        fail(str(exc), 126, exc.kind)
    except OSError as exc:
        where = f": {exc.filename}" if isinstance(exc.filename, str) else ""
        message = (exc.strerror or str(exc)) + where
        fail(message, 1, ERRNO_NAMES.get(exc.errno or 0, "os_error"))
    except (ValueError, TypeError, KeyError) as exc:
        fail(f"malformed request: {exc}", 126, "refused")


if __name__ == "__main__":
    main()
