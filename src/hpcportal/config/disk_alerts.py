"""Disk alerts: the shared storage, node scratch and users' own storage to watch.

Which paths and nodes are checked, how (``os.statvfs``, a probe command per node, or
Prometheus: ``prometheus_url`` in ``monitoring.py``), how often, the thresholds, and
the alerts about a user's own quota or file areas. Used by ``services/disk_alerts/``
(``watcher.py``, ``readers.py``, ``episodes.py``, ``recipients.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DiskAlertSettings(BaseModel):
    """What the disk usage watcher checks, how often, and when it alerts."""

    # Disk usage alerts (services/disk_alerts/)
    disk_alert_paths: list[str] = Field(
        default_factory=list,
        description="Shared data storage to watch (os.statvfs by the portal), e.g. ['/data'].",
    )
    disk_scratch_probe: list[str] = Field(
        default_factory=list,
        description="Command (argv) printing `df -P`-style output for one node's scratch; "
        "{node} is replaced, e.g. ['ssh', '{node}', 'df', '-P', '-B1', '/scratch']. "
        "Empty: node scratch is not watched.",
    )
    disk_scratch_nodes: list[str] = Field(
        default_factory=list,
        description="Nodes whose scratch is probed; empty means every node in the snapshot.",
    )
    disk_alert_interval: float = Field(
        default=300.0, gt=0, description="Seconds between two disk usage checks."
    )
    disk_alert_warning_percent: float = Field(
        default=75.0, gt=0, le=100, description="Default warning threshold (percent used)."
    )
    disk_alert_critical_percent: float = Field(
        default=90.0, gt=0, le=100, description="Default critical threshold (percent used)."
    )
    disk_probe_timeout: float = Field(
        default=15.0, gt=0, description="Seconds before a scratch probe is killed."
    )
    disk_user_alerts: Literal["off", "quota", "quota_or_area"] = Field(
        default="quota",
        description="Alerts about a user's own storage, told to that user only: 'quota' "
        "from their quota where the file system reports one (the `quota` command); "
        "'quota_or_area' also from the usage of the disk holding each of their file "
        "areas that has no quota; 'off' for none.",
    )
    disk_user_alert_users: list[str] = Field(
        default_factory=list,
        description="Users whose storage is checked; empty: the owners of the jobs in the "
        "current snapshot. Users with an active alert are always checked, so it can clear.",
    )
    disk_user_alert_max_users: int = Field(
        default=500, gt=0, description="Most users whose storage is checked per round."
    )
