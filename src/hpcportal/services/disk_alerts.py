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
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import math
import os
import pwd
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import httpx
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.db.models import DiskAlert, DiskAlertThreshold
from hpcportal.db.session import Database
from hpcportal.errors import PortalError
from hpcportal.limits import Line
from hpcportal.runas import RunAs
from hpcportal.services.auth import utcnow
from hpcportal.services.files import FileService, UsageReport
from hpcportal.services.identity import Principal, lookup_principal
from hpcportal.services.notifications import (
    Delivery,
    DiskEvent,
    DiskEventName,
    disk_event,
    store_disk_events,
)
from hpcportal.services.snapshot import SnapshotService

log = logging.getLogger(__name__)

Level = Literal["info", "warning", "critical", "unknown"]
Kind = Literal["shared", "scratch", "quota", "area"]
UserMode = Literal["off", "quota", "quota_or_area"]
RANK: dict[str, int] = {"unknown": 0, "info": 0, "warning": 1, "critical": 2}
DEFAULT_TARGET = "*"
#: Target of a failed Prometheus query when no node is known to pin it on.
PROMETHEUS_TARGET = "prometheus:scratch"
#: At most this many helpers (users) or probes (nodes) run at once.
MAX_WORKERS = 8
#: When no quota can be known (no ``quota`` command), users' quotas are looked at
#: again after this long rather than at every check.
QUOTA_RETRY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Reading:
    target: str
    kind: Kind
    total: int | None = None
    used: int | None = None
    percent: float | None = None
    error: str | None = None
    username: str | None = None  # a user's own target: told to them only


class Thresholds(BaseModel):
    warning_percent: float = Field(gt=0, le=100)
    critical_percent: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warning_percent >= self.critical_percent:
            raise ValueError("warning_percent must be below critical_percent")
        return self


class ThresholdSet(BaseModel):
    """``default`` for every target; ``targets`` overrides it for one target
    (``path:/data``, ``node:node001``, ``user:alice:home``) or for every target of a
    kind (``path:*``, ``node:*``, ``user:*``); the exact target wins."""

    default: Thresholds
    targets: dict[Line, Thresholds] = Field(default_factory=dict)

    def for_target(self, target: str) -> Thresholds:
        exact = self.targets.get(target)
        if exact is not None:
            return exact
        prefix, sep, _ = target.partition(":")
        return self.targets.get(f"{prefix}:*", self.default) if sep else self.default


class DiskAlertOut(BaseModel):
    target: str
    kind: Kind
    level: Level
    percent: float | None
    total_bytes: int | None
    used_bytes: int | None
    error: str | None
    checked_at: datetime
    active_since: datetime | None
    cleared_at: datetime | None
    username: str | None = None


class DiskAlertReport(BaseModel):
    alerts: list[DiskAlertOut]  # shared storage and scratch at warning or critical now
    targets: list[DiskAlertOut]  # every watched shared or scratch target, worst first
    yours: list[DiskAlertOut] = Field(default_factory=list)  # the asking user's own
    thresholds: ThresholdSet
    watching: bool  # anything configured to watch


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to tell: a level reached (``warning``, ``critical``) or, with level
    ``info``, an episode that was told and is over."""

    target: str
    level: Level
    percent: float | None
    kind: str = "shared"
    username: str | None = None
    episode: int = 0
    used: int | None = None
    total: int | None = None


# --- reading usage ------------------------------------------------------------------------


def _percent(total: int, used: int, available: int) -> float:
    usable = used + available
    return round(100.0 * used / usable, 2) if usable > 0 else 0.0


def read_shared(paths: Iterable[str]) -> list[Reading]:
    readings = []
    for path in paths:
        target = f"path:{path}"
        try:
            vfs = os.statvfs(path)
        except OSError as exc:
            readings.append(Reading(target, "shared", error=exc.strerror or str(exc)))
            continue
        total = vfs.f_blocks * vfs.f_frsize
        used = total - vfs.f_bfree * vfs.f_frsize
        available = vfs.f_bavail * vfs.f_frsize
        readings.append(Reading(target, "shared", total, used, _percent(total, used, available)))
    return readings


def parse_df(text: str) -> tuple[int, int, int]:
    """(total, used, available) bytes from ``df -P`` output (its last line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError("no df output")
    block = 1024
    match = re.search(r"(\d+)-blocks", lines[0])
    if match:
        block = int(match.group(1))
    fields = lines[-1].split()
    if len(fields) < 4 or not all(f.isdigit() for f in fields[1:4]):
        raise ValueError(f"unexpected df line {lines[-1][:100]!r}")
    total, used, available = (int(f) * block for f in fields[1:4])
    return total, used, available


def probe_node(argv: Sequence[str], node: str, timeout: float) -> Reading:
    target = f"node:{node}"
    command = [part.replace("{node}", node) for part in argv]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Reading(target, "scratch", error=f"probe failed: {exc}")
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return Reading(target, "scratch", error=f"probe failed: {reason[0][:300]}")
    try:
        total, used, available = parse_df(done.stdout)
    except ValueError as exc:
        return Reading(target, "scratch", error=f"probe output: {exc}")
    return Reading(target, "scratch", total, used, _percent(total, used, available))


def probe_scratch(settings: Settings, nodes: Sequence[str]) -> list[Reading]:
    if not settings.disk_scratch_probe or not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(nodes))) as pool:
        return list(
            pool.map(
                lambda n: probe_node(settings.disk_scratch_probe, n, settings.disk_probe_timeout),
                nodes,
            )
        )


# --- node scratch from Prometheus -------------------------------------------------------


class PrometheusError(Exception):
    """The query failed; the message says why (shown as the targets' error)."""


def query_prometheus(url: str, query: str, timeout: float) -> list[dict[str, Any]]:
    """One instant query (``GET /api/v1/query``); the ``vector`` result's series."""
    endpoint = url.rstrip("/") + "/api/v1/query"
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.get(endpoint, params={"query": query})
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus query failed: {exc or type(exc).__name__}") from exc
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise PrometheusError(
            f"Prometheus answered HTTP {response.status_code} without its JSON format"
        )
    if answer.get("status") != "success":
        reason = answer.get("error") or f"HTTP {response.status_code}"
        kind = answer.get("errorType")
        raise PrometheusError(f"Prometheus refused the query: {kind + ': ' if kind else ''}"
                              f"{str(reason)[:300]}")  # fmt: skip
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        found = data.get("resultType") if isinstance(data, dict) else None
        raise PrometheusError(f"Prometheus answered a {found or 'malformed'} result, not a vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise PrometheusError("Prometheus answered a malformed vector")
    return [series for series in result if isinstance(series, dict)]


def _node_of(label: str, known: set[str]) -> str:
    """``node001:9100`` → ``node001``; a domain is dropped when only the short name is
    a known node (``node001.cluster`` → ``node001``)."""
    name = label
    host, sep, port = label.rpartition(":")
    if sep and port.isdigit() and (host.startswith("[") or ":" not in host):
        name = host
    short = name.split(".", 1)[0]
    if known and name not in known and short in known and not name.startswith("["):
        return short
    return name


_SUFFIXES = {
    "node_filesystem_size_bytes": "size",
    "node_filesystem_free_bytes": "free",
    "node_filesystem_avail_bytes": "avail",
}


def scratch_from_series(
    series: Sequence[dict[str, Any]], label: str, nodes: Sequence[str], *, only_known: bool
) -> list[Reading]:
    """Readings per node from a query's series: size/free/avail bytes (free may be
    missing: then used = size - avail), or one value that is the percent used.

    ``nodes`` are the nodes expected (one with no series gets an ``unknown`` reading);
    ``only_known`` drops series of other nodes."""
    known = set(nodes)
    values: dict[str, dict[str, float]] = {}
    for item in series:
        metric = item.get("metric")
        value = item.get("value")
        if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
            continue
        node_label = metric.get(label)
        if not isinstance(node_label, str) or not node_label:
            continue
        node = _node_of(node_label, known)
        if only_known and node not in known:
            continue
        parts = values.setdefault(node, {})
        try:
            number = float(value[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            parts[_SUFFIXES.get(str(metric.get("__name__", "")), "percent")] = number
    readings = []
    for node in sorted(known | set(values)):
        target, found = f"node:{node}", values.get(node)
        if found is None:
            readings.append(Reading(target, "scratch", error="no series for this node in "
                                    "Prometheus's answer"))  # fmt: skip
        elif not found:
            readings.append(Reading(target, "scratch", error="Prometheus's answer has no "
                                    "finite value for this node"))  # fmt: skip
        elif "size" in found and "avail" in found:
            total, available = int(found["size"]), int(found["avail"])
            used = total - int(found.get("free", found["avail"]))
            readings.append(Reading(target, "scratch", total, used,
                                    _percent(total, used, available)))  # fmt: skip
        elif "percent" in found:
            readings.append(Reading(target, "scratch", percent=round(found["percent"], 2)))
        else:
            readings.append(Reading(target, "scratch", error="Prometheus's answer lacks the "
                                    "size or avail bytes of this node"))  # fmt: skip
    return readings


def read_prometheus(settings: Settings, nodes: Sequence[str]) -> list[Reading]:
    """Node scratch from one Prometheus query; a failure is an ``unknown`` reading of
    every expected node (or of ``prometheus:scratch`` when none is known)."""
    assert settings.prometheus_url is not None
    try:
        series = query_prometheus(
            settings.prometheus_url, settings.prometheus_scratch_query, settings.prometheus_timeout
        )
    except PrometheusError as exc:
        log.warning("%s", exc)
        targets = [f"node:{n}" for n in nodes] or [PROMETHEUS_TARGET]
        return [Reading(t, "scratch", error=str(exc)) for t in targets]
    return scratch_from_series(series, settings.prometheus_node_label, nodes,
                               only_known=bool(nodes))  # fmt: skip


# --- a user's own quota and file areas --------------------------------------------------


def user_target(username: str, root: str) -> str:
    return f"user:{username}:{root}"


def user_readings(username: str, usage: UsageReport, mode: UserMode) -> list[Reading]:
    """Readings of one user's file areas: their quota on the area's file system (once
    per file system) where one is set, else (``quota_or_area``) the area's disk."""
    if mode == "off":
        return []
    readings: list[Reading] = []
    quota_seen: set[str] = set()
    for root in usage.roots:
        target = user_target(username, root.name)
        quota = root.quota
        limit = (quota.soft or quota.hard) if quota is not None else 0
        if quota is not None and limit > 0:
            if quota.filesystem in quota_seen:
                continue
            quota_seen.add(quota.filesystem)
            percent = round(100.0 * quota.used / limit, 2)
            readings.append(Reading(target, "quota", limit, quota.used, percent,
                                    username=username))  # fmt: skip
        elif mode == "quota_or_area":
            space = root.space
            if space is not None:
                readings.append(Reading(target, "area", space.total, space.used,
                                        space.percent, username=username))  # fmt: skip
            elif root.error:
                readings.append(Reading(target, "area", error=root.error, username=username))
    return readings


def read_user(settings: Settings, runas: RunAs, who: Principal) -> UsageReport | None:
    """The user's file areas and quota, read as them; ``None`` when that failed."""
    try:
        return FileService(settings, runas, who).usage(None, None)
    except PortalError as exc:
        log.info("cannot read the storage of %s: %s", who.username, exc)
        return None


# --- thresholds ---------------------------------------------------------------------------


def get_thresholds(session: Session, settings: Settings) -> ThresholdSet:
    rows = {r.target: r for r in session.scalars(select(DiskAlertThreshold))}
    default = rows.pop(DEFAULT_TARGET, None)
    return ThresholdSet(
        default=Thresholds(
            warning_percent=default.warning_percent
            if default
            else settings.disk_alert_warning_percent,
            critical_percent=default.critical_percent
            if default
            else settings.disk_alert_critical_percent,
        ),
        targets={
            t: Thresholds(warning_percent=r.warning_percent, critical_percent=r.critical_percent)
            for t, r in rows.items()
        },
    )


def set_thresholds(session: Session, new: ThresholdSet, username: str) -> ThresholdSet:
    """Replace the stored thresholds (the default and every override) with ``new``."""
    now = utcnow()
    session.execute(delete(DiskAlertThreshold))
    for target, values in [(DEFAULT_TARGET, new.default), *new.targets.items()]:
        session.add(
            DiskAlertThreshold(
                target=target[:255],
                warning_percent=values.warning_percent,
                critical_percent=values.critical_percent,
                updated_by=username,
                updated_at=now,
            )
        )
    session.flush()
    return new


def level_for(percent: float | None, limits: Thresholds) -> Level:
    if percent is None:
        return "unknown"
    if percent >= limits.critical_percent:
        return "critical"
    if percent >= limits.warning_percent:
        return "warning"
    return "info"


# --- recording ----------------------------------------------------------------------------


def _apply(row: DiskAlert, level: Level, now: datetime) -> None:
    """Start, keep or end the row's episode for its new level.

    Ending keeps ``notified_rank``: an episode that was told is told to be over by
    ``claim_notices``, which resets it."""
    row.level = level
    if RANK[level] > 0:
        if row.active_since is None:
            row.active_since, row.cleared_at, row.notified_rank = now, None, 0
            row.episode = (row.episode or 0) + 1
    elif level == "info" and row.active_since is not None:
        row.active_since, row.cleared_at = None, now
    # "unknown" (a failed reading) neither starts nor ends an episode.


def record(
    session: Session, readings: Iterable[Reading], limits: ThresholdSet, now: datetime | None = None
) -> None:
    """Store each reading and the level it gives."""
    now = now or utcnow()
    for reading in readings:
        row = session.get(DiskAlert, reading.target)
        if row is None:
            row = DiskAlert(
                target=reading.target,
                kind=reading.kind,
                level="info",
                notified_rank=0,
                episode=0,
                checked_at=now,
            )
            session.add(row)
        row.kind = reading.kind
        row.username = reading.username
        row.checked_at = now
        row.error = reading.error
        if reading.percent is not None:
            row.percent, row.total_bytes, row.used_bytes = (
                reading.percent,
                reading.total,
                reading.used,
            )
        level = level_for(reading.percent, limits.for_target(reading.target))
        _apply(row, level, now)
    session.flush()


def reevaluate(session: Session, limits: ThresholdSet, now: datetime | None = None) -> None:
    """Levels again from the stored usage (after the thresholds changed)."""
    now = now or utcnow()
    for row in session.scalars(select(DiskAlert)):
        if row.level != "unknown":
            _apply(row, level_for(row.percent, limits.for_target(row.target)), now)
    session.flush()


def forget_user_targets(session: Session, username: str, keep: Iterable[str]) -> None:
    """Drop the user's targets not read this round (an area or a quota that is gone)."""
    session.execute(
        delete(DiskAlert).where(DiskAlert.username == username, DiskAlert.target.not_in(list(keep)))
    )


def _notice(row: DiskAlert, level: Level) -> Notice:
    return Notice(
        row.target, level, row.percent, row.kind, row.username, row.episode or 0,
        row.used_bytes, row.total_bytes,
    )  # fmt: skip


def claim_notices(session: Session) -> list[Notice]:
    """What was not told yet, claimed by this process with conditional UPDATEs (so
    of several replicas only one tells): a level reached during an active episode,
    above what was told; and the end of an episode that was told (level ``info``)."""
    notices = []
    for row in session.scalars(select(DiskAlert).where(DiskAlert.active_since.is_not(None))):
        rank = RANK[row.level]
        if rank <= row.notified_rank:
            continue
        result = session.execute(
            update(DiskAlert)
            .where(DiskAlert.target == row.target, DiskAlert.notified_rank < rank)
            .values(notified_rank=rank)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            notices.append(_notice(row, cast(Level, row.level)))
    ended = select(DiskAlert).where(DiskAlert.active_since.is_(None), DiskAlert.notified_rank > 0)
    for row in session.scalars(ended):
        result = session.execute(
            update(DiskAlert)
            .where(
                DiskAlert.target == row.target,
                DiskAlert.active_since.is_(None),
                DiskAlert.notified_rank > 0,
            )
            .values(notified_rank=0)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            notices.append(_notice(row, "info"))
    session.expire_all()
    return notices


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


# --- the watcher --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    notices: list[Notice]
    deliveries: list[Delivery]


class DiskWatcher:
    """Checks usage every ``disk_alert_interval`` seconds while the app runs (only when
    something is configured to watch), and pushes what it tells with ``deliver``
    (``LiveHub.deliver``: called on the event loop)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        snapshot: SnapshotService | None = None,
        *,
        runas: RunAs | None = None,
        deliver: Callable[[Iterable[Delivery]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.snapshot = snapshot
        self.runas = runas
        self.deliver = deliver
        self._task: asyncio.Task[None] | None = None
        #: With ``disk_user_alerts = "quota"``, when no user's quota could be known
        #: (the ``quota`` command is not installed), users are not read again before.
        self._quota_retry_at = 0.0

    @property
    def configured(self) -> bool:
        return watching(self.settings)

    @property
    def watches_users(self) -> bool:
        return self.settings.disk_user_alerts != "off" and self.runas is not None

    async def start(self) -> None:
        if self.configured and self._task is None:
            self._task = asyncio.create_task(self._run(), name="disk-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a failed check must not stop the watcher
                log.exception("disk usage check failed")
            await asyncio.sleep(self.settings.disk_alert_interval)

    async def _current_snapshot(self) -> Any:
        if self.snapshot is None:
            return None
        try:
            return await self.snapshot.current()
        except PortalError:
            return None

    async def nodes(self) -> list[str]:
        if self.settings.disk_scratch_nodes or self.snapshot is None:
            return list(self.settings.disk_scratch_nodes)
        current = await self._current_snapshot()
        return [node.name for node in current.nodes] if current is not None else []

    async def job_owners(self) -> list[str]:
        current = await self._current_snapshot()
        return sorted({job.user for job in current.jobs}) if current is not None else []

    async def check(self) -> list[Notice]:
        """Read every target now, store the levels, tell what is new (and push it)."""
        scratch = bool(self.settings.disk_scratch_probe or self.settings.prometheus_url)
        nodes = await self.nodes() if scratch else []
        owners: list[str] = []
        if self.watches_users and not self.settings.disk_user_alert_users:
            owners = await self.job_owners()
        result = await run_in_threadpool(self.check_sync, nodes, owners)
        self.push(result)
        return result.notices

    def push(self, result: CheckResult) -> None:
        """Push what was stored (after its commit), on the event loop."""
        if self.deliver is not None and result.deliveries:
            self.deliver(result.deliveries)

    def change_thresholds(
        self,
        new: ThresholdSet,
        username: str,
        also: Callable[[Session], None] | None = None,
    ) -> CheckResult:
        """Store ``new`` thresholds, re-evaluate the stored usage against them and tell
        what that starts, escalates or ends; ``also`` runs in the same transaction
        (the audit entry). Blocking: run it in a worker thread, then ``push``."""
        with self.database.session() as session:
            stored = set_thresholds(session, new, username)
            reevaluate(session, stored)
            if also is not None:
                also(session)
            notices = claim_notices(session)
            deliveries = tell(session, self.settings, notices, stored)
        return CheckResult(notices, deliveries)

    def users(self, owners: Sequence[str]) -> list[Principal]:
        """Whose storage to read: configured users or ``owners``, and first of all
        those with an active alert (so that it can clear); only users who may log in."""
        with self.database.session() as session:
            active = session.scalars(
                select(DiskAlert.username).where(
                    DiskAlert.username.is_not(None),
                    or_(DiskAlert.active_since.is_not(None), DiskAlert.notified_rank > 0),
                )
            ).all()
        chosen = self.settings.disk_user_alert_users or owners
        wanted = list(dict.fromkeys([*sorted(u for u in active if u), *chosen]))
        principals = []
        for username in wanted[: self.settings.disk_user_alert_max_users]:
            who = lookup_principal(username, self.settings.admin_group)
            if who is not None and who.uid >= self.settings.min_uid:
                principals.append(who)
        return principals

    def read_users(self, owners: Sequence[str]) -> dict[str, list[Reading]]:
        """Each user's readings (users whose read failed are left out)."""
        if not self.watches_users or self.runas is None:
            return {}
        runas, settings = self.runas, self.settings
        quota_only = settings.disk_user_alerts == "quota"
        if quota_only and time.monotonic() < self._quota_retry_at:
            return {}
        principals = self.users(owners)
        if not principals:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(principals))) as pool:
            found = list(pool.map(lambda who: read_user(settings, runas, who), principals))
        usages = {
            who.username: usage
            for who, usage in zip(principals, found, strict=True)
            if usage is not None
        }
        if quota_only and usages and not any(u.quota_known for u in usages.values()):
            note = next(iter(usages.values())).quota_note
            log.info("no quota is known (%s); users are checked again in an hour", note)
            self._quota_retry_at = time.monotonic() + QUOTA_RETRY_SECONDS
        return {
            user: user_readings(user, usage, settings.disk_user_alerts)
            for user, usage in usages.items()
        }

    def check_sync(self, nodes: Sequence[str], owners: Sequence[str] = ()) -> CheckResult:
        settings = self.settings
        readings = read_shared(settings.disk_alert_paths)
        if settings.prometheus_url:
            readings += read_prometheus(settings, nodes)
        else:
            readings += probe_scratch(settings, nodes)
        per_user = self.read_users(owners)
        for user_readings_ in per_user.values():
            readings += user_readings_
        with self.database.session() as session:
            if settings.prometheus_url and not any(r.target == PROMETHEUS_TARGET for r in readings):
                session.execute(delete(DiskAlert).where(DiskAlert.target == PROMETHEUS_TARGET))
            for username, mine in per_user.items():
                forget_user_targets(session, username, [r.target for r in mine])
            limits = get_thresholds(session, settings)
            record(session, readings, limits)
            notices = claim_notices(session)
            deliveries = tell(session, settings, notices, limits)
        return CheckResult(notices, deliveries)
