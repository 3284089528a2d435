"""Which Slurm releases a dev cluster can run, and where each one's programs come from.

22.05 is the host's own Debian 12 packages. Newer releases come from a Debian root
(``roots.py``) whose suite ships them: Debian 13 ("trixie") has 24.11, Debian sid has
26.05 at the time of writing. sid moves, so the release a root really holds is read
from its package database rather than assumed from the suite name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hpcportal.devcluster.errors import DevClusterError

HOST_RELEASE = "22.05"
#: The packages a root must hold: the daemons, the clients, accounting, munge's library.
ROOT_PACKAGES = ("slurm-wlm", "slurm-client", "slurmdbd", "munge")
_MAJOR_MINOR = re.compile(r"^(?:\d+:)?(\d+)\.(\d+)\.")


@dataclass(frozen=True)
class Release:
    """A Slurm release as ``major.minor``; ``suite`` is None for the host's packages."""

    name: str
    suite: str | None = None

    @property
    def from_root(self) -> bool:
        return self.suite is not None


RELEASES: dict[str, Release] = {
    HOST_RELEASE: Release(HOST_RELEASE),
    "24.11": Release("24.11", "trixie"),
    "26.05": Release("26.05", "sid"),
}


def parse_release(text: str) -> Release:
    """The supported release called ``text``, or an error that lists the supported ones."""
    release = RELEASES.get(text.strip())
    if release is None:
        supported = ", ".join(RELEASES)
        raise DevClusterError(f"Slurm {text!r} is not supported; choose one of {supported}")
    return release


def release_of_version(version: str) -> str | None:
    """``24.11`` for a Debian version such as ``24.11.5-4+deb13u1``; None if unparsable."""
    match = _MAJOR_MINOR.match(version.strip())
    return f"{match.group(1)}.{match.group(2)}" if match else None


def dpkg_versions(status_text: str) -> dict[str, str]:
    """Installed package -> version, from the text of a ``var/lib/dpkg/status`` file."""
    versions: dict[str, str] = {}
    for stanza in status_text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            name, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t")):
                fields[name] = value.strip()
        if (
            fields.get("Package")
            and fields.get("Version")
            and "installed" in fields.get("Status", "").split()
        ):
            versions[fields["Package"]] = fields["Version"]
    return versions


def installed_slurm_version(root: Path) -> str | None:
    """The ``slurm-wlm`` version installed in the Debian tree ``root``; None if absent."""
    try:
        text = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except FileNotFoundError:
        return None
    return dpkg_versions(text).get("slurm-wlm")
