"""How a replica joins the others: the one function the composition root calls.

With one server (no Redis configured) it returns an always-leader ``Leadership`` and
no replicator, and changes nothing: the process reads Slurm and runs every background
task itself, as before. With Redis, it connects the lease to the parts that must act
once (the refresher, the hub's notification and session workers, the disk watcher,
each behind the fence) and the bus to the parts every replica serves from.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.ha.leadership import Leadership
from hpcportal.ha.redis_bus import RedisBus
from hpcportal.ha.replication import Replicator
from hpcportal.services.disk_alerts import DiskWatcher
from hpcportal.services.live import LiveHub
from hpcportal.services.notifications import NotificationDetector
from hpcportal.services.snapshot import SnapshotService


@dataclass(frozen=True, slots=True)
class Coordination:
    """This replica's part in a group: its view of the lease, and its bus (if any)."""

    leadership: Leadership
    replicator: Replicator | None


def coordinate(
    settings: Settings,
    database: Database,
    snapshot: SnapshotService,
    hub: LiveHub,
    detector: NotificationDetector,
    watcher: DiskWatcher,
) -> Coordination:
    leadership = Leadership.from_settings(settings, database)
    if not settings.replicated:
        return Coordination(leadership, None)
    detector.fence = leadership.fence
    if hub.tracker is not None:
        hub.tracker.fence = leadership.fence
    watcher.leading = leadership.is_leader
    watcher.fence = leadership.fence
    bus = RedisBus.connect(
        settings.redis_url,
        sentinels=settings.redis_sentinels,
        master=settings.redis_sentinel_master,
        prefix=settings.redis_prefix,
    )
    replicator = Replicator(bus, leadership, snapshot, hub, detector)
    replicator.wire()
    return Coordination(leadership, replicator)
