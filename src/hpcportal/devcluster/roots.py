"""Debian roots that hold a newer Slurm than the host: made once with debootstrap, cached.

A root is a plain Debian tree (``debootstrap --variant=minbase``, about 290 MB)
with Slurm, slurmdbd and munge installed. It is shared by every dev cluster of that
release on the host and never changed by one: each cluster keeps its configs, state
and logs in its own directory. slurmctld and slurmdbd run chrooted into the root,
slurmd and the clients on the host through the root's own dynamic loader
(``wrappers.py``).

Roots live in ``$HPCPORTAL_SLURM_ROOTS`` or ``/var/cache/hpcportal/roots``, one folder
per Debian suite. A root counts only once its marker file exists, so an interrupted
debootstrap is redone rather than used.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hpcportal.devcluster.commands import run
from hpcportal.devcluster.errors import DevClusterError
from hpcportal.devcluster.files import ensure_dir
from hpcportal.devcluster.packages import find_binary
from hpcportal.devcluster.releases import ROOT_PACKAGES, Release, installed_slurm_version

log = logging.getLogger(__name__)

ROOTS_ENV = "HPCPORTAL_SLURM_ROOTS"
#: Optional Debian mirror URL for debootstrap; unset means debootstrap's own default.
MIRROR_ENV = "HPCPORTAL_DEBIAN_MIRROR"
DEFAULT_ROOTS_DIR = Path("/var/cache/hpcportal/roots")
READY_MARKER = ".hpcportal-root"
DEBOOTSTRAP_TIMEOUT = 1800.0
APT_TIMEOUT = 1800.0
MULTIARCH = "x86_64-linux-gnu"
#: Where the chrooted daemons see MariaDB's socket directory (see ``wrappers.py``).
MOUNT_POINTS = ("run/mysqld", "run/mariadbd")


def roots_dir() -> Path:
    """Where roots are cached: ``$HPCPORTAL_SLURM_ROOTS`` or /var/cache/hpcportal/roots."""
    return Path(os.path.abspath(os.environ.get(ROOTS_ENV, str(DEFAULT_ROOTS_DIR))))


def resolve_in_root(root: Path, relative: str) -> Path:
    """The real file behind ``root/relative``, following symlinks as the chroot would.

    Debian's Slurm daemons are alternatives (``/usr/sbin/slurmd`` -> ``/etc/alternatives/
    slurmd`` -> ``/usr/sbin/slurmd-wlm``): absolute targets mean the root's, not the host's.
    """
    path = root / relative.lstrip("/")
    for _ in range(16):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise DevClusterError(f"too many symlinks behind {root / relative}")


@dataclass(frozen=True)
class SlurmRoot:
    """A Debian tree with Slurm in it, and the paths that running its programs needs."""

    path: Path

    @property
    def ready(self) -> bool:
        return (self.path / READY_MARKER).exists()

    @property
    def loader(self) -> Path:
        """The root's glibc loader: runs the root's programs on the host's older glibc."""
        return self.path / "usr/lib64/ld-linux-x86-64.so.2"

    @property
    def plugin_dir(self) -> Path:
        return self.path / "usr/lib" / MULTIARCH / "slurm-wlm"

    @property
    def library_path(self) -> tuple[Path, ...]:
        """Searched before the binaries' RUNPATH, which names the host's libslurmfull."""
        return (
            self.plugin_dir,
            self.path / "usr/lib" / MULTIARCH,
            self.path / "lib" / MULTIARCH,
        )

    def program(self, name: str) -> Path | None:
        """The real file of Slurm client ``name`` in the root, or None if it has none."""
        for directory in ("usr/bin", "usr/sbin"):
            candidate = resolve_in_root(self.path, f"{directory}/{name}")
            if candidate.is_file():
                return candidate
        return None

    def slurm_version(self) -> str | None:
        """The Debian version of the root's ``slurm-wlm``, e.g. ``24.11.5-4+deb13u1``."""
        return installed_slurm_version(self.path)


def ensure_self_link(root: SlurmRoot) -> None:
    """Make the root's host path valid inside the root too: a symlink to ``/``.

    slurm.conf names files of the root (``PluginDir``) by their host path, because the
    clients run on the host; the chrooted daemons read the same slurm.conf (Slurm takes
    one ``PluginDir`` only), and find the same files through this link.
    """
    link = root.path / str(root.path).lstrip("/")
    if link.is_symlink():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another `up` made it at the same moment
        link.symlink_to("/")


def root_for(release: Release) -> SlurmRoot:
    """The cached root of ``release`` (which may not have been made yet)."""
    if release.suite is None:
        raise DevClusterError(f"Slurm {release.name} comes from the host, not from a root")
    return SlurmRoot(roots_dir() / release.suite)


def ensure_debootstrap() -> None:
    """Install debootstrap when missing; only ``up --slurm`` of a newer release needs it."""
    if find_binary("debootstrap") is not None:
        return
    log.info("installing debootstrap: newer Slurm releases run from Debian roots it makes")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env, timeout=APT_TIMEOUT)
    run(["apt-get", "install", "-y", "debootstrap"], env=env, timeout=APT_TIMEOUT)


def debootstrap_argv(suite: str, target: Path, mirror: str | None) -> list[str]:
    """The command that makes a root: a minimal Debian with Slurm, slurmdbd and munge."""
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(ROOT_PACKAGES)}",
        suite,
        str(target),
    ]
    return [*argv, mirror] if mirror else argv


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (debootstrap mounts /proc, /sys)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = Path(line.split()[4].replace("\\040", " "))
        if mount_point == path or path in mount_point.parents:
            found.append(mount_point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_partial(path: Path) -> None:
    """Remove an interrupted debootstrap, unmounting what it left mounted inside first."""
    for mount_point in mounts_below(path):
        run(["umount", "--lazy", str(mount_point)], timeout=30)
    if path.exists():
        shutil.rmtree(path)


@contextmanager
def root_lock(directory: Path, suite: str) -> Iterator[None]:
    """One maker per root at a time: a second ``up`` waits and then finds it ready."""
    with (directory / f".{suite}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_root(release: Release) -> SlurmRoot:
    """The root of ``release``, made with debootstrap if this host has none yet."""
    root = root_for(release)
    if root.ready:
        return root
    assert release.suite is not None
    directory = root.path.parent
    ensure_dir(directory)
    with root_lock(directory, release.suite):
        if root.ready:
            return root
        ensure_debootstrap()
        partial = directory / f"{release.suite}.partial"
        remove_partial(partial)
        if root.path.exists():  # made by hand or an older run, but never marked ready
            log.warning("remaking %s: it has no %s marker", root.path, READY_MARKER)
            remove_partial(root.path)
        log.info(
            "making the Debian %s root for Slurm %s in %s (about a minute, 290 MB)",
            release.suite,
            release.name,
            root.path,
        )
        started = time.monotonic()
        run(
            debootstrap_argv(release.suite, partial, os.environ.get(MIRROR_ENV)),
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        remove_partial_mounts(partial)
        partial.rename(root.path)
        for mount_point in MOUNT_POINTS:
            (root.path / mount_point).mkdir(parents=True, exist_ok=True)
        (root.path / READY_MARKER).write_text(f"{root.slurm_version()}\n")
        log.info("root %s made in %.0f s", root.path, time.monotonic() - started)
    return root


def remove_partial_mounts(path: Path) -> None:
    """Unmount anything debootstrap left mounted in ``path`` (it should leave nothing)."""
    for mount_point in mounts_below(path):
        if mount_point != path:
            run(["umount", "--lazy", str(mount_point)], timeout=30)
