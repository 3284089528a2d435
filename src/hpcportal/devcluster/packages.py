"""The Debian packages the dev cluster needs, installed only when a binary is missing."""

from __future__ import annotations

import logging
import os
import shutil

from hpcportal.devcluster.commands import run

log = logging.getLogger(__name__)

# Which package provides each program we call; ``slurm-wlm`` pulls in slurmctld, slurmd
# and the clients.
REQUIRED_BINARIES: dict[str, str] = {
    "slurmctld": "slurm-wlm",
    "slurmd": "slurm-wlm",
    "sinfo": "slurm-wlm",
    "sbatch": "slurm-wlm",
    "scontrol": "slurm-wlm",
    "sacctmgr": "slurm-wlm",
    "slurmdbd": "slurmdbd",
    "munged": "munge",
    "munge": "munge",
    "unmunge": "munge",
    "mariadbd": "mariadb-server",
    "mysql_install_db": "mariadb-server",
    "mysql": "mariadb-client",
    "mysqladmin": "mariadb-client",
    "sudo": "sudo",
}
APT_TIMEOUT = 1800.0


def find_binary(name: str) -> str | None:
    """Locate ``name`` on PATH or in the sbin directories a non-login root PATH may lack."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search)


def missing_packages() -> list[str]:
    """The packages whose programs are not installed, each once, in a stable order."""
    missing = [pkg for binary, pkg in REQUIRED_BINARIES.items() if find_binary(binary) is None]
    return list(dict.fromkeys(missing))


def ensure_packages() -> list[str]:
    """apt-get install whatever is missing; returns the packages installed."""
    missing = missing_packages()
    if not missing:
        return []
    log.info("installing %s (this takes a few minutes)", " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env, timeout=APT_TIMEOUT)
    run(["apt-get", "install", "-y", *missing], env=env, timeout=APT_TIMEOUT)
    return missing
