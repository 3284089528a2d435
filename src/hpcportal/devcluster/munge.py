"""A private munged: own key, own socket, so the system's munge (if any) is untouched."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
from pathlib import Path

from hpcportal.devcluster.commands import try_run
from hpcportal.devcluster.errors import DevClusterError
from hpcportal.devcluster.paths import Layout

log = logging.getLogger(__name__)

MUNGE_USER = "munge"
KEY_BYTES = 1024


def _set_owner_mode(path: Path, uid: int, gid: int, mode: int) -> None:
    """chown/chmod only when different, so a warm ``up`` changes nothing."""
    st = path.stat()
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def prepare_munge(layout: Layout) -> None:
    """Create munge's directories and key with the ownership and modes munged insists on.

    munged refuses a socket directory that others cannot enter, and a key readable by
    anyone but the munge user.
    """
    try:
        entry = pwd.getpwnam(MUNGE_USER)
    except KeyError as exc:
        raise DevClusterError(
            "the munge user does not exist; is the munge package installed?"
        ) from exc
    uid, gid = entry.pw_uid, entry.pw_gid
    for directory in (layout.munge, layout.munge_run):
        directory.mkdir(mode=0o755, exist_ok=True)
        _set_owner_mode(directory, uid, gid, 0o755)
    if not layout.munge_key.exists():
        fd = os.open(layout.munge_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
        log.info("generated munge key %s", layout.munge_key)
    _set_owner_mode(layout.munge_key, uid, gid, 0o400)


def munge_argv(layout: Layout) -> tuple[str, ...]:
    """The command that starts munged as the munge user with all files under ``layout``."""
    return (
        "runuser",
        "-u",
        MUNGE_USER,
        "--",
        "munged",
        f"--key-file={layout.munge_key}",
        f"--socket={layout.munge_socket}",
        f"--pid-file={layout.munge_pid}",
        f"--log-file={layout.munge_log}",
        f"--seed-file={layout.munge_seed}",
    )


def munge_works(socket: Path) -> bool:
    """True if a credential made through ``socket`` can be decoded through it again."""
    encoded = try_run(["munge", "-S", str(socket), "-n"])
    if encoded is None or encoded.returncode != 0:
        return False
    decoded = try_run(["unmunge", "-S", str(socket)], input_text=encoded.stdout)
    return decoded is not None and decoded.returncode == 0
