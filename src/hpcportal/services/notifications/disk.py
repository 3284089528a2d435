"""Disk alerts as notifications: their texts and how they are stored once each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from hpcportal.services.auth import utcnow
from hpcportal.services.notifications.detector import (
    Delivery,
    deliveries_for,
    insert_new,
    new_row,
)

# --- Disk alerts (services/disk_alerts.py) -------------------------------------------------

DiskEventName = Literal["disk_warning", "disk_critical", "disk_cleared"]
DiskArea = Literal["shared", "scratch", "quota", "area"]

_DISK_TITLES: dict[str, str] = {
    "disk_warning": "Disk usage warning",
    "disk_critical": "Disk usage critical",
    "disk_cleared": "Disk usage back below threshold",
}
_DISK_ACTIVE: dict[str, str] = {
    "shared": "Shared storage {name} is {percent} full (threshold {threshold}).",
    "scratch": "Scratch on node {name} is {percent} full (threshold {threshold}).",
    "quota": "You have used {percent} of your quota on {name} (threshold {threshold}).",
    "area": "The disk holding your file area {name} is {percent} full (threshold {threshold}).",
}
_DISK_CLEARED: dict[str, str] = {
    "shared": "Shared storage {name} is back below the threshold: {percent} used.",
    "scratch": "Scratch on node {name} is back below the threshold: {percent} used.",
    "quota": "Your quota use on {name} is back below the threshold: {percent}.",
    "area": "The disk holding your file area {name} is back below the threshold: {percent} used.",
}


@dataclass(frozen=True, slots=True)
class DiskEvent:
    """One disk alert notification for one user, before it is stored."""

    username: str
    target: str
    episode: int
    event: DiskEventName
    title: str
    body: str
    params: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.username, self.target, self.episode, self.event)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} %"


def describe_disk(
    event: DiskEventName,
    *,
    target: str,
    area: DiskArea,
    name: str,
    percent: float | None,
    threshold: float,
    used_bytes: int | None = None,
    total_bytes: int | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Title, body and the parameters a front end needs to say the same in its language.

    ``name`` is what the alert is about: a path for shared storage, a node for
    scratch, a file area (``home``) or the file system for a quota."""
    level = "info" if event == "disk_cleared" else event.removeprefix("disk_")
    params: dict[str, Any] = {
        "target": target,
        "area": area,
        "name": name,
        "level": level,
        "percent": percent,
        "threshold": threshold,
        "used_bytes": used_bytes,
        "total_bytes": total_bytes,
    }
    texts = _DISK_CLEARED if event == "disk_cleared" else _DISK_ACTIVE
    body = texts[area].format(name=name, percent=_pct(percent), threshold=_pct(threshold))
    return _DISK_TITLES[event], body, params


def disk_event(username: str, episode: int, event: DiskEventName, **details: Any) -> DiskEvent:
    title, body, params = describe_disk(event, **details)
    return DiskEvent(username, str(details["target"]), episode, event, title, body, params)


def store_disk_events(
    session: Session, events: Iterable[DiskEvent], now: datetime | None = None
) -> list[Delivery]:
    """Insert each disk notification unless it exists (unique key username, target,
    episode, event), in key order; return what this call inserted, to push."""
    unique = sorted({e.key: e for e in events}.values(), key=lambda e: e.key)
    when = now or utcnow()
    rows = [
        new_row(
            e.username,
            "disk",
            e.event,
            e.title,
            e.body,
            e.params,
            when,
            target=e.target,
            episode=e.episode,
        )
        for e in unique
    ]
    inserted = insert_new(session, rows, ["username", "target", "episode", "event"])
    return deliveries_for(session, inserted)
