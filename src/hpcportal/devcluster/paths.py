"""Where the dev cluster keeps its files, and why that is sometimes not the chosen dir.

Jobs run as the demo users, and Slurm clients started by them must read
``slurm.conf`` and reach the munge socket. If a parent of the chosen directory is not
traversable by everyone (say it lives under ``/root``), or the munge socket path would
exceed the 108-byte ``sun_path`` limit, the real state goes to
``/var/lib/hpcportal-devcluster/<hash>`` and the chosen path becomes a symlink to it.
All config files are rendered with the real path so nothing depends on the symlink.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hpcportal.devcluster.errors import DevClusterError
from hpcportal.devcluster.files import ensure_dir

FALLBACK_BASE = Path("/var/lib/hpcportal-devcluster")
# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
MUNGE_SOCKET_RELATIVE = Path("munge/run/munge.socket")


def default_dir() -> Path:
    """``$HPCPORTAL_DEVCLUSTER_DIR`` or ``./.devcluster``, made absolute."""
    return Path(os.path.abspath(os.environ.get("HPCPORTAL_DEVCLUSTER_DIR", ".devcluster")))


def fallback_root(requested: Path) -> Path:
    """The world-readable place used for ``requested``; stable for the same absolute path."""
    digest = hashlib.sha256(str(requested).encode()).hexdigest()[:12]
    return FALLBACK_BASE / digest


def traversable_by_all(path: Path) -> bool:
    """True if every existing directory from ``path`` up to ``/`` has the others-execute bit."""
    for candidate in (path, *path.parents):
        try:
            mode = candidate.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            return False
    return True


def socket_fits(root: Path) -> bool:
    """True if the munge socket below ``root`` stays within the Unix socket path limit."""
    return len(os.fsencode(root / MUNGE_SOCKET_RELATIVE)) <= MAX_SOCKET_PATH


def resolve_root(requested: Path) -> Path:
    """The directory that really holds the state for the chosen path ``requested``.

    Pure apart from reading the file system, so ``status`` and ``slurm_conf`` can be
    answered before anything was created.
    """
    requested = Path(os.path.abspath(requested))
    if requested.is_symlink():
        return requested.resolve()
    resolved = requested.resolve()
    if traversable_by_all(resolved.parent) and socket_fits(resolved):
        return resolved
    return fallback_root(requested)


def materialize_root(requested: Path, root: Path) -> None:
    """Create ``root`` (mode 0755) and, if it differs from ``requested``, the symlink to it."""
    requested = Path(os.path.abspath(requested))
    if root.parent == FALLBACK_BASE:
        ensure_dir(FALLBACK_BASE)
    ensure_dir(root)
    if requested.resolve() == root:
        return
    if requested.is_symlink():
        requested.unlink()
    elif requested.is_dir():
        if any(requested.iterdir()):
            raise DevClusterError(
                f"{requested} is a non-empty directory that other users cannot traverse to; "
                f"move it away (the state belongs in {root}) and run `up` again"
            )
        requested.rmdir()
    elif requested.exists():
        raise DevClusterError(f"{requested} exists and is not a directory")
    requested.parent.mkdir(parents=True, exist_ok=True)
    requested.symlink_to(root, target_is_directory=True)


@dataclass(frozen=True)
class Layout:
    """Every path of the dev cluster, below one real root directory."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def job_state(self) -> Path:
        """slurmctld's saved jobs: while it is missing, job ids start again at 1."""
        return self.state / "job_state"

    @property
    def db_name(self) -> str:
        """This directory's accounting database. One per directory, not per port slot:
        two checkouts that take turns on a slot number their jobs independently, and
        their records must never meet under the same job id."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        return f"hpcdev_acct_{digest}"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def munge(self) -> Path:
        return self.root / "munge"

    @property
    def munge_run(self) -> Path:
        return self.munge / "run"

    @property
    def munge_socket(self) -> Path:
        return self.root / MUNGE_SOCKET_RELATIVE

    @property
    def munge_key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def munge_pid(self) -> Path:
        return self.munge_run / "munged.pid"

    @property
    def munge_log(self) -> Path:
        return self.munge / "munged.log"

    @property
    def munge_seed(self) -> Path:
        return self.munge / "munged.seed"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        return self.etc / "slurmdbd.conf"

    @property
    def gres_conf(self) -> Path:
        return self.etc / "gres.conf"

    @property
    def db_password_file(self) -> Path:
        return self.etc / "db-password"

    @property
    def cgroup_conf(self) -> Path:
        """Only for a release from a root: 24.11 and later read it, with cgroups off."""
        return self.etc / "cgroup.conf"

    @property
    def release_file(self) -> Path:
        """The Slurm release this directory was brought up with (absent: the host's)."""
        return self.etc / "release"

    @property
    def private_data_file(self) -> Path:
        """The ``PrivateData`` flags this directory was brought up with (absent: none)."""
        return self.etc / "private-data"

    @property
    def bin(self) -> Path:
        """Wrappers for the Slurm clients of a root (``wrappers.py``); what
        ``slurm_bin_dir`` points at for this cluster."""
        return self.root / "bin"

    @property
    def libexec(self) -> Path:
        return self.root / "libexec"

    @property
    def in_root(self) -> Path:
        """The launcher that runs slurmctld and slurmdbd chrooted into the release's root."""
        return self.libexec / "in-root"

    @property
    def slurmstepd_wrapper(self) -> Path:
        """What slurmd of a release from a root runs as its slurmstepd (``slurmd -d``)."""
        return self.libexec / "slurmstepd"

    @property
    def slot_file(self) -> Path:
        """Which port slot this cluster uses (see ``templates.Slot``)."""
        return self.etc / "slot"

    @property
    def gpu_disabled_marker(self) -> Path:
        """Holds the reason the fake GPU node was left out; absent when it is in."""
        return self.etc / "gpu-disabled"

    @property
    def slurmctld_pid(self) -> Path:
        return self.run / "slurmctld.pid"

    @property
    def slurmctld_log(self) -> Path:
        return self.log / "slurmctld.log"

    @property
    def backup_controller_file(self) -> Path:
        """Present when this directory runs a backup slurmctld (``up --backup-controller``)."""
        return self.etc / "backup-controller"

    @property
    def backup_hosts(self) -> Path:
        """Mounted over /etc/hosts in the backup slurmctld's namespace (its name resolves)."""
        return self.etc / "hosts-backup"

    @property
    def backup_run(self) -> Path:
        """Mounted over ``run`` in the backup slurmctld's namespace: its own pid file."""
        return self.root / "run-backup"

    @property
    def backup_log(self) -> Path:
        """Mounted over ``log`` in the backup slurmctld's namespace: its own log."""
        return self.root / "log-backup"

    @property
    def slurmctld_backup_pid(self) -> Path:
        return self.backup_run / "slurmctld.pid"

    @property
    def slurmctld_backup_log(self) -> Path:
        return self.backup_log / "slurmctld.log"

    @property
    def slurmdbd_pid(self) -> Path:
        return self.run / "slurmdbd.pid"

    @property
    def slurmdbd_log(self) -> Path:
        return self.log / "slurmdbd.log"

    @property
    def mariadb_pid(self) -> Path:
        """Exists only when ``up`` started MariaDB itself, so ``down`` knows to stop it."""
        return self.run / "mariadb.pid"

    @property
    def mariadb_log(self) -> Path:
        return self.log / "mariadb.log"

    def slurmd_pid(self, node: str) -> Path:
        return self.run / f"slurmd-{node}.pid"

    def slurmd_log(self, node: str) -> Path:
        return self.log / f"slurmd-{node}.log"

    def slurmd_spool(self, node: str) -> Path:
        return self.spool / node

    def fake_gpu(self, index: int) -> Path:
        return self.dev / f"fakegpu{index}"

    @property
    def monitoring(self) -> Path:
        """Prometheus' configuration and data (``monitoring.py``)."""
        return self.root / "monitoring"

    @property
    def prometheus_yml(self) -> Path:
        return self.monitoring / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.monitoring / "data"

    @property
    def prometheus_pid(self) -> Path:
        return self.run / "prometheus.pid"

    @property
    def scrape_interval_file(self) -> Path:
        """Prometheus' scrape interval in seconds (``up --scrape-interval``; absent: 5)."""
        return self.etc / "scrape-interval"

    @property
    def portal_target_file(self) -> Path:
        """The portal ``host:port`` Prometheus scrapes (``up --portal-target``)."""
        return self.etc / "portal-target"

    @property
    def gpu_job_dir(self) -> Path:
        """DCGM exporter's HPC job mapping: one file per GPU index holding the job id,
        written by the cluster's Prolog and removed by its Epilog (root's, 0755)."""
        return self.root / "gpu-jobs"

    @property
    def gpu_load_dir(self) -> Path:
        """Where a job says how busy its GPUs are (``<job id>`` holding a percentage);
        1777 so jobs write their own, read by the GPU exporter stand-in."""
        return self.root / "gpu-load"

    @property
    def prolog(self) -> Path:
        return self.libexec / "prolog"

    @property
    def epilog(self) -> Path:
        return self.libexec / "epilog"

    def node_exporter_pid(self, node: str) -> Path:
        return self.run / f"node-exporter-{node}.pid"

    def dcgm_pid(self, node: str) -> Path:
        return self.run / f"dcgm-standin-{node}.pid"

    def daemon_output(self, name: str) -> Path:
        """Where a daemon's stdout/stderr go before it has opened its own log file."""
        return self.log / f"{name}.out"
