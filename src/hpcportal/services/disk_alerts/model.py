"""Disk alerts' vocabulary: levels, kinds, a reading, thresholds, a report, a notice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from hpcportal.limits import Line

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
