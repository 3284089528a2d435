"""Job notifications: state changes become messages for the job's owner, once each.

After each refresh the ``NotificationDetector`` compares every job's status with
the status last *seen* (the ``job_seen`` table, which every replica shares and which
survives restarts) and turns transitions into events:

- ``started``: queued (or never seen) to running; also a job first seen finished
  that did run (it went through both between two looks);
- ``completed``, ``failed``, ``timed_out``, ``cancelled``: reaching that end state;
- ``time_limit``: running with less than ``notify_time_left_minutes`` left (once,
  and only for jobs whose whole limit is longer than that, or every short job would
  be warned when it starts).

Each event is inserted *if absent* under the unique key (username, job_id, event),
so it exists once however many replicas detect it or how often the portal restarts;
only the process whose insert succeeded pushes it to the owner's sockets. A job that
left the queue while the portal was not looking is looked up in accounting, with one
``sacct`` for all such jobs per refresh.

When the ``job_seen`` table is empty at start-up (a new installation), the first
refresh only records what it sees: jobs that finished before the portal ever looked
are not announced.

Disk alerts (``services/disk_alerts.py``) are notifications too (``kind`` ``disk``):
``disk_warning`` and ``disk_critical`` when a target's alert starts or escalates,
``disk_cleared`` when its usage drops back below the threshold. They go to every
admin for shared storage and node scratch, and to the user alone for their own
quota or file area; ``store_disk_events`` inserts them under the unique key
(username, target, episode, event), so they too exist once whatever the number of
replicas, and returns what this process must push.

The package: ``model`` (events, limits, API views), ``inbox`` (one's own
notifications), ``texts`` (what an event says), ``detector`` (events after each
refresh) and ``disk`` (disk alerts as notifications). Importers use this package's
names.
"""

from __future__ import annotations

from hpcportal.services.notifications.detector import (
    AccountingSource,
    Delivery,
    NotificationDetector,
    Seen,
)
from hpcportal.services.notifications.disk import (
    DiskArea,
    DiskEvent,
    DiskEventName,
    describe_disk,
    disk_event,
    store_disk_events,
)
from hpcportal.services.notifications.inbox import (
    delete_notification,
    list_notifications,
    mark_all_read,
    mark_read,
    unread_count,
)
from hpcportal.services.notifications.model import (
    CHUNK,
    END_EVENTS,
    EVENTS,
    GIVE_UP_AFTER,
    LOOKUP_BACKOFF,
    MAX_LOOKUP,
    MAX_PAGE_SIZE,
    PRUNE_EVERY,
    SEEN_RETENTION,
    Event,
    NotificationOut,
    NotificationPage,
    UnreadCount,
)
from hpcportal.services.notifications.texts import (
    JobEvent,
    job_ran,
    minutes_left,
    record_ran,
    tracked,
    transition_events,
)

__all__ = [
    "CHUNK",
    "END_EVENTS",
    "EVENTS",
    "GIVE_UP_AFTER",
    "LOOKUP_BACKOFF",
    "MAX_LOOKUP",
    "MAX_PAGE_SIZE",
    "PRUNE_EVERY",
    "SEEN_RETENTION",
    "AccountingSource",
    "Delivery",
    "DiskArea",
    "DiskEvent",
    "DiskEventName",
    "Event",
    "JobEvent",
    "NotificationDetector",
    "NotificationOut",
    "NotificationPage",
    "Seen",
    "UnreadCount",
    "delete_notification",
    "describe_disk",
    "disk_event",
    "job_ran",
    "list_notifications",
    "mark_all_read",
    "mark_read",
    "minutes_left",
    "record_ran",
    "store_disk_events",
    "tracked",
    "transition_events",
    "unread_count",
]
