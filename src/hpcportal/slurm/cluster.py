"""A Slurm cluster the portal talks to, as a value.

Where its clients are (``bin_dir``), which ``slurm.conf`` they read, and, once
asked, which release it runs and which JSON format the portal reads from it. The
executor and the adapter take one; nothing module-level assumes there is only one,
so a portal (or a test) can talk to a 22.05 and a 24.11 cluster side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hpcportal.slurm.formats import SCONTROL_NODES_FROM, SlurmRelease, json_flag


@dataclass(frozen=True, slots=True)
class SlurmCluster:
    name: str = "default"
    slurm_conf: Path | None = None
    bin_dir: Path | None = None
    #: Both None until the adapter has asked Slurm (``SlurmAdapter.cluster``).
    release: SlurmRelease | None = None
    data_format: str | None = None

    def detected(self, release: SlurmRelease, data_format: str) -> SlurmCluster:
        return replace(self, release=release, data_format=data_format)

    def undetected(self) -> SlurmCluster:
        return replace(self, release=None, data_format=None)

    @property
    def json_flag(self) -> str:
        """``--json`` or ``--json=vX``; only for a detected cluster."""
        assert self.release is not None and self.data_format is not None
        return json_flag(self.release, self.data_format)

    @property
    def nodes_from_scontrol(self) -> bool:
        """Nodes come from ``scontrol --json show nodes`` from 23.02 (``sinfo --json``
        groups them there), from ``sinfo --json`` before."""
        return self.release is not None and self.release >= SCONTROL_NODES_FROM

    def describe(self) -> str:
        """``Slurm 24.11.5, JSON data_parser v0.0.42`` (or that it is not known yet)."""
        if self.release is None:
            return "Slurm release not detected yet"
        return f"Slurm {self.release}, JSON data_parser {self.data_format}"
