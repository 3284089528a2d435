"""The Debian packages the dev cluster needs, installed only when a binary is missing."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

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
#: The dev cluster's monitoring (``monitoring.py``): installed without starting the
#: packages' own system-wide daemons (see ``ensure_packages``).
MONITORING_BINARIES: dict[str, str] = {
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-alertmanager": "prometheus-alertmanager",
}
APT_TIMEOUT = 1800.0
#: Debian's hook that tells maintainer scripts whether they may start services;
#: exit 101 means "no" (invoke-rc.d and deb-systemd-invoke both ask it).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def find_binary(name: str) -> str | None:
    """Locate ``name`` on PATH or in the sbin directories a non-login root PATH may lack."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search)


def missing_packages(binaries: Mapping[str, str] = REQUIRED_BINARIES) -> list[str]:
    """The packages whose programs are not installed, each once, in a stable order."""
    missing = [pkg for binary, pkg in binaries.items() if find_binary(binary) is None]
    return list(dict.fromkeys(missing))


@contextlib.contextmanager
def services_not_started() -> Iterator[None]:
    """While installing: a policy-rc.d saying no, unless the host already has one.

    Debian's prometheus and prometheus-node-exporter start system-wide daemons on
    9090/9100 when installed; the dev cluster runs its own on its slot's ports instead.
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# hpcportal dev-cluster: installing\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def ensure_packages(binaries: Mapping[str, str] = REQUIRED_BINARIES) -> list[str]:
    """apt-get install whatever is missing, starting none of their services; returns
    the packages installed."""
    missing = missing_packages(binaries)
    if not missing:
        return []
    log.info("installing %s (this takes a few minutes)", " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with services_not_started():
        run(["apt-get", "update"], env=env, timeout=APT_TIMEOUT)
        run(["apt-get", "install", "-y", *missing], env=env, timeout=APT_TIMEOUT)
    return missing
