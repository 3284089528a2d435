"""The Slurm boundary: how Slurm's commands are run and how often they are read.

Where Slurm is (``slurm_conf``, ``slurm_bin_dir``), how long a command may take, and the
snapshot's refresh rhythm: its interval, when it counts as stale, the back-off while
slurmctld is slow and the quick re-read after the portal acts on a job. Used by
``slurm/executor.py`` and ``slurm/adapter.py`` (the boundary itself) and
``services/snapshot.py`` (the refresher).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class SlurmSettings(BaseModel):
    """Running Slurm's commands and refreshing the snapshot."""

    # Slurm boundary
    slurm_conf: Path | None = Field(
        default=None,
        description="SLURM_CONF for every Slurm command; unset means Slurm's own default.",
    )
    slurm_bin_dir: Path | None = Field(
        default=None, description="Directory of squeue/sinfo/...; unset means PATH."
    )
    slurm_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before a command is killed."
    )
    refresh_interval: float = Field(
        default=10.0, gt=0, description="Seconds between two snapshot refreshes."
    )
    stale_after: float = Field(
        default=35.0,
        gt=0,
        description="A snapshot older than this many seconds is reported stale and /ready fails.",
    )
    refresh_slow_fraction: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="A refresh taking longer than this fraction of the interval means "
        "slurmctld is slow: the refresher doubles its interval (and halves it again once "
        "Slurm recovers). Rate-limit answers from slurmctld (rl_enable) do the same.",
    )
    refresh_max_interval: float = Field(
        default=120.0,
        gt=0,
        description="The longest interval the refresher backs off to; stale_after grows "
        "with the back-off, so backing off alone never marks the data stale.",
    )
    refresh_soon_delay: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="After the portal acts on a job, how long it gathers more such requests "
        "before reading those jobs again (one squeue --jobs for all of them).",
    )
    refresh_soon_min_gap: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Fewest seconds between two such reads, however many actions come in "
        "(while the refresher backs off, its interval is the gap).",
    )
    accounting_cache_seconds: float = Field(
        default=15.0,
        ge=0,
        description="How long an identical sacct/sshare/sacctmgr answer is reused.",
    )
