"""Prometheus' HTTP API answers as strict, typed models.

Written from https://prometheus.io/docs/prometheus/latest/querying/api/ and checked
against real answers of Prometheus 2.42 (``tests/fixtures/prometheus/``). Field names
follow Prometheus' camelCase on the wire (aliases), snake_case in Python. Every field
the portal reads is required with one exact type, so a reshaped answer fails loudly
(``PrometheusUnreadable``, 502) instead of reading as empty; extra fields are ignored.
A sample is ``[unix seconds, "value as text"]`` (the text keeps ``NaN`` and ``+Inf``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: A series' labels, ``__name__`` included.
Labels = dict[str, str]
#: ``[unix seconds, "value"]``.
Sample = tuple[float, str]


class Wire(BaseModel):
    model_config = ConfigDict(
        strict=True, frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class VectorSample(Wire):
    metric: Labels
    value: Sample


class MatrixSeries(Wire):
    metric: Labels
    values: list[Sample]


class Vector(Wire):
    result_type: Literal["vector"]
    result: list[VectorSample]


class Matrix(Wire):
    result_type: Literal["matrix"]
    result: list[MatrixSeries]

    def points(self) -> int:
        """Samples in the answer, over all series."""
        return sum(len(series.values) for series in self.result)


class Scalar(Wire):
    result_type: Literal["scalar"]
    result: Sample


class String(Wire):
    result_type: Literal["string"]
    result: Sample


#: What ``/api/v1/query`` answers: any of the four result types.
QueryResult = Annotated[Vector | Matrix | Scalar | String, Field(discriminator="result_type")]


class Target(Wire):
    discovered_labels: Labels
    labels: Labels
    scrape_pool: str
    scrape_url: str
    global_url: str
    last_error: str
    last_scrape: datetime
    last_scrape_duration: float
    health: Literal["up", "down", "unknown"]
    scrape_interval: str
    scrape_timeout: str


class DroppedTarget(Wire):
    discovered_labels: Labels


class Targets(Wire):
    active_targets: list[Target]
    dropped_targets: list[DroppedTarget]


class Alert(Wire):
    labels: Labels
    annotations: Labels
    state: Literal["pending", "firing", "inactive"]
    active_at: datetime | None = None
    value: str


class AlertingRule(Wire):
    type: Literal["alerting"]
    name: str
    query: str
    duration: float
    labels: Labels = {}
    annotations: Labels = {}
    alerts: list[Alert]
    health: str
    last_error: str | None = None
    state: Literal["pending", "firing", "inactive"]
    evaluation_time: float
    last_evaluation: datetime


class RecordingRule(Wire):
    type: Literal["recording"]
    name: str
    query: str
    labels: Labels = {}
    health: str
    last_error: str | None = None
    evaluation_time: float
    last_evaluation: datetime


Rule = Annotated[AlertingRule | RecordingRule, Field(discriminator="type")]


class RuleGroup(Wire):
    name: str
    file: str
    rules: list[Rule]
    interval: float
    evaluation_time: float
    last_evaluation: datetime


class RuleGroups(Wire):
    groups: list[RuleGroup]


class Alerts(Wire):
    alerts: list[Alert]


class Config(Wire):
    yaml: str


class BuildInfo(Wire):
    version: str
    revision: str
    branch: str
    build_date: str
    go_version: str


class Health(Wire):
    """``/-/healthy`` and ``/-/ready`` as answered, and the version that answered."""

    healthy: bool
    ready: bool
    message: str
    version: str | None = None
