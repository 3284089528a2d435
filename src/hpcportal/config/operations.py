"""The leader's periodic upkeep: backups, scheduler statistics and the usage store.

Where and how often backups are made and how many are kept, how often slurmctld's
scheduler statistics (sdiag) are sampled and how long they are kept, and how the usage
store's ingester reads finished jobs from sacct. Used by
``services/operations/backup_schedule.py`` and ``cli/cluster_backup.py``,
``services/admin/scheduler.py`` and ``services/reports/ingest.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class OperationsSettings(BaseModel):
    """What the leader does on its own, on a schedule."""

    # Backups (services/operations/backup.py, retention.py)
    backup_dir: Path | None = Field(
        default=None,
        description="Where `hpcportal cluster backup` writes backups (one folder each, "
        "0700: a backup holds the secret key). Unset: no scheduled backups, and the "
        "commands need --dir.",
    )
    backup_every_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 31,
        description="The leader makes a backup this often when backup_dir is set "
        "(once per period across the replicas); 0: only by hand.",
    )
    backup_keep_daily: int = Field(
        default=7,
        ge=0,
        le=10_000,
        description="Backups kept: the newest of each of the last N days.",
    )
    backup_keep_weekly: int = Field(
        default=4, ge=0, le=10_000, description="... and of each of the last N ISO weeks."
    )
    backup_keep_monthly: int = Field(
        default=12, ge=0, le=10_000, description="... and of each of the last N months."
    )

    # Scheduler health (services/admin/scheduler.py)
    sdiag_sample_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="The leader reads slurmctld's scheduler statistics (sdiag) this often "
        "for the admin console's scheduler page (one read per cluster whatever the number "
        "of replicas or viewers); 0: never.",
    )
    sdiag_retention_days: float = Field(
        default=7.0,
        gt=0,
        le=366,
        description="Scheduler statistics samples older than this are deleted.",
    )

    # Usage reports: the usage store's ingester (services/reports/ingest.py)
    reports_ingest_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="The leader reads finished jobs from sacct into the usage store this "
        "often (one reader per cluster whatever the number of replicas); 0: never.",
    )
    reports_ingest_window_minutes: int = Field(
        default=360,
        ge=1,
        le=10080,
        description="Each sacct read covers at most this much time (jobs that ended in it), "
        "stored in one transaction, so a large backlog is read in bounded steps.",
    )
    reports_ingest_lookback_days: float = Field(
        default=30.0,
        ge=0,
        le=3660,
        description="On the first ingest, jobs that ended this long ago are read too.",
    )
    reports_ingest_settle_seconds: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        description="The store is complete only up to this long ago, and each read starts "
        "this much before it: slurmdbd may record a job's end after it happened. Jobs "
        "already stored are not counted again.",
    )
