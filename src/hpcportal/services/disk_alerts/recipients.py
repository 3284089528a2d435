"""Who is told what: admins for shared storage and scratch, the user alone for their
own quota or area; the report the API and pages show."""

from __future__ import annotations

import contextlib
import grp
import logging
import pwd
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert
from hpcportal.services.disk_alerts.episodes import get_thresholds
from hpcportal.services.disk_alerts.model import (
    RANK,
    DiskAlertOut,
    DiskAlertReport,
    Notice,
    ThresholdSet,
)
from hpcportal.services.identity import Principal
from hpcportal.services.notifications import (
    Delivery,
    DiskEvent,
    DiskEventName,
    disk_event,
    store_disk_events,
)

log = logging.getLogger(__package__)  # one logger name for the whole package

# --- telling ------------------------------------------------------------------------------


def admin_usernames(settings: Settings) -> list[str]:
    """Members of ``admin_group`` (listed in the group, or by primary group) who may
    log in (UID at least ``min_uid``)."""
    try:
        group = grp.getgrnam(settings.admin_group)
    except KeyError:
        return []
    names = set(group.gr_mem)
    names.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == group.gr_gid)
    admins = []
    for name in sorted(names):
        with contextlib.suppress(KeyError):
            if pwd.getpwnam(name).pw_uid >= settings.min_uid:
                admins.append(name)
    return admins


def target_name(target: str) -> str:
    """What a target is about, for people: ``/data``, ``node001``, ``home``."""
    prefix, _, rest = target.partition(":")
    if prefix == "user":
        return rest.partition(":")[2] or rest
    return rest or target


_AREAS = {"shared", "scratch", "quota", "area"}


def events_for(
    notices: Iterable[Notice], limits: ThresholdSet, admins: Sequence[str]
) -> list[DiskEvent]:
    """The notifications of these notices: a user's own target to that user, the
    rest to every admin."""
    events = []
    for notice in notices:
        limit = limits.for_target(notice.target)
        event: DiskEventName
        if notice.level == "critical":
            event, threshold = "disk_critical", limit.critical_percent
        elif notice.level == "warning":
            event, threshold = "disk_warning", limit.warning_percent
        else:
            event, threshold = "disk_cleared", limit.warning_percent
        area = notice.kind if notice.kind in _AREAS else "shared"
        recipients = [notice.username] if notice.username else list(admins)
        for username in recipients:
            events.append(
                disk_event(
                    username,
                    notice.episode,
                    event,
                    target=notice.target,
                    area=area,
                    name=target_name(notice.target),
                    percent=notice.percent,
                    threshold=threshold,
                    used_bytes=notice.used,
                    total_bytes=notice.total,
                )
            )
    return events


def tell(
    session: Session, settings: Settings, notices: Sequence[Notice], limits: ThresholdSet
) -> list[Delivery]:
    """Store the notifications of ``notices`` (in the caller's transaction, with the
    claims) and return those to push; also log each notice."""
    for notice in notices:
        log.warning(
            "disk usage %s on %s: %s%% used",
            "back to normal" if notice.level == "info" else notice.level,
            notice.target,
            "?" if notice.percent is None else f"{notice.percent:.1f}",
        )
    if not notices:
        return []
    admins = admin_usernames(settings) if any(n.username is None for n in notices) else []
    return store_disk_events(session, events_for(notices, limits, admins))


def _out(row: DiskAlert) -> DiskAlertOut:
    return DiskAlertOut.model_validate(row, from_attributes=True)


def report(session: Session, settings: Settings, who: Principal | None = None) -> DiskAlertReport:
    """Shared storage and scratch for everyone; ``yours``: ``who``'s own targets."""
    rows = list(session.scalars(select(DiskAlert)))
    rows.sort(key=lambda r: (-RANK[r.level], -(r.percent or 0.0), r.target))
    targets = [_out(r) for r in rows if r.username is None]
    yours = [_out(r) for r in rows if who is not None and r.username == who.username]
    return DiskAlertReport(
        alerts=[t for t in targets if RANK[t.level] > 0],
        targets=targets,
        yours=yours,
        thresholds=get_thresholds(session, settings),
        watching=watching(settings),
    )


def watching(settings: Settings) -> bool:
    return bool(
        settings.disk_alert_paths
        or settings.disk_scratch_probe
        or settings.prometheus_url
        or settings.disk_user_alerts != "off"
    )
