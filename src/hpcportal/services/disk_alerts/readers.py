"""Reading usage: shared storage (statvfs), node scratch (a probe command or one
Prometheus query), and a user's own quota and file areas (through the run-as helper)."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hpcportal.config import Settings
from hpcportal.errors import PortalError
from hpcportal.errors import PrometheusError as PortalPrometheusError
from hpcportal.prometheus.client import instant_vector
from hpcportal.runas import RunAs
from hpcportal.services.disk_alerts.model import MAX_WORKERS, PROMETHEUS_TARGET, Reading, UserMode
from hpcportal.services.files import FileService, UsageReport
from hpcportal.services.identity import Principal

log = logging.getLogger(__package__)  # one logger name for the whole package

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
    """One instant query (``GET /api/v1/query``) through the Prometheus boundary; the
    ``vector`` result's series as ``{"metric": {...}, "value": [time, "text"]}``."""
    try:
        vector = instant_vector(url, query, timeout)
    except PortalPrometheusError as exc:
        raise PrometheusError(f"Prometheus query failed: {exc.message}") from exc
    return [{"metric": dict(s.metric), "value": list(s.value)} for s in vector.result]


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
