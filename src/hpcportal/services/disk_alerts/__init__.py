"""Disk usage alerts: shared data storage, each node's scratch, each user's quota.

Every ``disk_alert_interval`` seconds each replica reads:

- **shared storage**: ``os.statvfs`` of each of ``disk_alert_paths`` (target
  ``path:/data``), by the portal itself;
- **node scratch** (target ``node:NAME``): with ``prometheus_url`` set, one instant
  query (``prometheus_scratch_query``, by default node_exporter's
  ``node_filesystem_{size,free,avail}_bytes`` of ``/scratch``) for every node at
  once; else the ``disk_scratch_probe`` command for each node (``{node}`` replaced),
  whose output is ``df -P``-style (the last line's size, used and available columns;
  ``-B1`` or the header's block size). Nodes are ``disk_scratch_nodes``, or every
  node of the current snapshot;
- **a user's own storage** (target ``user:NAME:ROOT``, ``disk_user_alerts``): for
  each of their file areas, their quota where the file system reports one (kind
  ``quota``: used against the soft limit, else the hard one), else, with
  ``quota_or_area``, the usage of the disk holding the area (kind ``area``). Read
  as the user through the run-as helper (``FileService.usage``), for
  ``disk_user_alert_users`` or the owners of the snapshot's jobs, plus anyone with
  an active alert so that it can clear.

Each reading becomes a level: ``critical`` at or above the critical threshold,
``warning`` at or above the warning one (defaults 90 % and 75 %, changed by admins
with ``PUT /alerts/disk/thresholds``, per target or per kind of target such as
``user:*``), ``info`` below, and ``unknown`` when the reading failed (with the
error text). The ``disk_alerts`` table keeps one row per target: an episode starts
(``active_since``, ``episode`` + 1) when a target reaches warning, is told once per
level reached (``notified_rank``, claimed with a conditional UPDATE so two replicas
never both tell), and ends (``cleared_at``) when usage drops below the warning
threshold; an episode that was told is then told to be over, claimed the same way.

Who is told: every admin (members of ``admin_group``, also by primary group) for
shared storage and scratch; the user alone for their own quota or area. Each is a
notification (``services/notifications.py``, kind ``disk``) stored under a unique
key (user, target, episode, event), pushed live by the replica whose insert
succeeded, and logged at WARNING level (``hpcportal.services.disk_alerts``).

The package: ``model`` (vocabulary), ``readers`` (the three readers),
``episodes`` (thresholds and the episode state machine), ``recipients`` (who is
told, the report) and ``watcher`` (the loop). Importers use this package's names.
"""

from __future__ import annotations

from hpcportal.services.disk_alerts.episodes import (
    claim_notices,
    forget_user_targets,
    get_thresholds,
    level_for,
    record,
    reevaluate,
    set_thresholds,
)
from hpcportal.services.disk_alerts.model import (
    DEFAULT_TARGET,
    MAX_WORKERS,
    PROMETHEUS_TARGET,
    QUOTA_RETRY_SECONDS,
    RANK,
    DiskAlertOut,
    DiskAlertReport,
    Kind,
    Level,
    Notice,
    Reading,
    Thresholds,
    ThresholdSet,
    UserMode,
)
from hpcportal.services.disk_alerts.readers import (
    PrometheusError,
    parse_df,
    probe_node,
    probe_scratch,
    query_prometheus,
    read_prometheus,
    read_shared,
    read_user,
    scratch_from_series,
    user_readings,
    user_target,
)
from hpcportal.services.disk_alerts.recipients import (
    admin_usernames,
    events_for,
    report,
    target_name,
    tell,
    watching,
)
from hpcportal.services.disk_alerts.watcher import CheckResult, DiskWatcher

__all__ = [
    "DEFAULT_TARGET",
    "MAX_WORKERS",
    "PROMETHEUS_TARGET",
    "QUOTA_RETRY_SECONDS",
    "RANK",
    "CheckResult",
    "DiskAlertOut",
    "DiskAlertReport",
    "DiskWatcher",
    "Kind",
    "Level",
    "Notice",
    "PrometheusError",
    "Reading",
    "ThresholdSet",
    "Thresholds",
    "UserMode",
    "admin_usernames",
    "claim_notices",
    "events_for",
    "forget_user_targets",
    "get_thresholds",
    "level_for",
    "parse_df",
    "probe_node",
    "probe_scratch",
    "query_prometheus",
    "read_prometheus",
    "read_shared",
    "read_user",
    "record",
    "reevaluate",
    "report",
    "scratch_from_series",
    "set_thresholds",
    "target_name",
    "tell",
    "user_readings",
    "user_target",
    "watching",
]
