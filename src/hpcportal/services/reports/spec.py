"""What a report is asked for (``ReportSpec``) and who asks (``Viewer``).

A spec is what the API, the pages, the CLI and a schedule store and hand to
``kinds.build_report``; it is validated once here, so a kind never sees a period that
ends before it starts, an unknown measure or a time zone that is a file path. The
viewer is what decides whose figures a report may hold: a portal admin everything, a
Slurm account coordinator (as ``sacctmgr`` records them) the accounts they coordinate
and their own jobs, anyone else their own jobs (``usage.resolve_scope``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from hpcportal.services.identity import Principal
from hpcportal.services.reports.document import Language, Period, ReportKind
from hpcportal.slurm.models import SlurmRoles

#: What figures can be grouped by. ``time`` groups by ``granularity`` in ``time_zone``.
Dimension = Literal["user", "account", "partition", "qos", "size_bucket", "time"]
#: The dimensions a filter or a scope can name (all but time, which is the period).
FilterDimension = Literal["user", "account", "partition", "qos", "size_bucket"]
Granularity = Literal["hour", "day", "week", "month"]
#: What can be summed or derived from the usage store's rollups (``usage.MEASURES``).
Measure = Literal[
    "jobs",
    "started",
    "cpu_hours",
    "gpu_hours",
    "memory_gb_hours",
    "wall_hours",
    "wait_hours",
    "requested_hours",
    "cpu_time_hours",
    "mean_wait_minutes",
    "mean_wall_minutes",
    "cpu_efficiency",
    "wall_accuracy",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "other",
]
#: A Slurm or user name as a filter value: one short line.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@+-][^\x00-\x1f\x7f]*$"),
]
#: The longest period one report covers (a year of comparisons needs two).
MAX_PERIOD = timedelta(days=3 * 366)


class ReportScope(BaseModel):
    """Whose jobs the report covers. Empty lists mean "everything the viewer may see";
    naming users or accounts narrows it, and naming one the viewer may not see is
    refused (403), not silently dropped."""

    users: list[Name] = Field(default_factory=list, max_length=100)
    accounts: list[Name] = Field(default_factory=list, max_length=100)


class ReportSpec(BaseModel):
    """One report to build: its kind, the period [start, end) in UTC, the language of
    its text, and for ``custom`` (other kinds may use them too) the dimensions,
    measures, filters and the time granularity in ``time_zone``."""

    kind: ReportKind
    period: Period
    language: Language = "en"
    time_zone: str = Field(default="UTC", max_length=64)
    granularity: Granularity = "day"
    dimensions: list[Dimension] = Field(default_factory=list, max_length=4)
    measures: list[Measure] = Field(default_factory=list, max_length=18)
    filters: dict[FilterDimension, list[Name]] = Field(default_factory=dict)
    scope: ReportScope = Field(default_factory=ReportScope)
    #: Also compute the period before, for comparison.
    compare_previous: bool = True
    #: The period to compare with; by default the one of the same length just before
    #: (a schedule passes the calendar month before a month).
    previous: Period | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value.startswith(("/", ".")) or ".." in value:
            raise ValueError(f"unknown time zone {value!r}")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("dimensions", "measures")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each dimension and measure may be named once")
        return value

    @field_validator("filters")
    @classmethod
    def _bounded_filters(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if any(len(v) > 100 for v in value.values()):
            raise ValueError("a filter names at most 100 values")
        return value

    @model_validator(mode="after")
    def _sane_period(self) -> ReportSpec:
        p = self.period
        if p.start.tzinfo is None or p.end.tzinfo is None:
            raise ValueError("the period's start and end need a time zone (UTC)")
        if p.end <= p.start:
            raise ValueError("the period must end after it starts")
        if p.end - p.start > MAX_PERIOD:
            raise ValueError("a report covers at most three years")
        return self

    def previous_period(self) -> Period:
        """``previous``, or the period of the same length that ends where this one starts."""
        if self.previous is not None:
            return self.previous
        length = self.period.end - self.period.start
        return Period(start=self.period.start - length, end=self.period.start)


@dataclass(frozen=True)
class Viewer:
    """Who a report is built for, with what they may see: the portal admin role,
    and the Slurm accounts they coordinate (``sacctmgr show user withcoord``)."""

    username: str
    is_admin: bool = False
    coordinates: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, principal: Principal, roles: SlurmRoles) -> Viewer:
        """The viewer of a signed-in person; ``roles`` is ``SlurmAdapter.roles()``.
        A Slurm operator or administrator sees everything, as in ``sacct``."""
        return cls(
            username=principal.username,
            is_admin=principal.is_admin or roles.is_operator(principal.username),
            coordinates=roles.coordinates(principal.username),
        )
