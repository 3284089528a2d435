"""Personal home dashboards: which widgets a user placed where, and the site presets.

A layout is a list of widgets on a 12-column grid (``x``, ``y``, ``w``, ``h`` in grid
cells, as gridstack uses them). A user without a saved layout sees the ``default``
preset, so a change to that preset reaches everyone who never customised theirs.
Each widget type appears at most once on a dashboard.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpcportal.db.models import DashboardLayout
from hpcportal.errors import InvalidInput
from hpcportal.services.identity import Principal

WidgetType = Literal[
    "cluster_summary",
    "my_jobs",
    "partition_load",
    "node_heatmap",
    "notifications",
    "quick_submit",
    "storage",
]
#: Every widget type, in the order the "add a widget" menu lists them.
WIDGET_TYPES: tuple[WidgetType, ...] = get_args(WidgetType)
GRID_COLUMNS = 12
MAX_ROWS = 200
MAX_HEIGHT = 24


class Widget(BaseModel):
    """One widget on the grid; positions and sizes are in grid cells."""

    model_config = ConfigDict(extra="forbid")

    type: WidgetType
    x: int = Field(ge=0, lt=GRID_COLUMNS)
    y: int = Field(ge=0, le=MAX_ROWS)
    w: int = Field(ge=1, le=GRID_COLUMNS)
    h: int = Field(ge=1, le=MAX_HEIGHT)

    @model_validator(mode="after")
    def _fits(self) -> Widget:
        if self.x + self.w > GRID_COLUMNS:
            raise ValueError(f"x + w must be at most {GRID_COLUMNS} (the grid's columns)")
        return self


class LayoutIn(BaseModel):
    """A layout to save: the widgets, each type at most once."""

    model_config = ConfigDict(extra="forbid")

    widgets: list[Widget] = Field(max_length=len(WIDGET_TYPES))

    @field_validator("widgets")
    @classmethod
    def _unique(cls, widgets: list[Widget]) -> list[Widget]:
        seen: set[str] = set()
        for widget in widgets:
            if widget.type in seen:
                raise ValueError(f"the widget {widget.type!r} appears twice")
            seen.add(widget.type)
        return widgets


class Layout(BaseModel):
    """A user's dashboard: saved by them, or the preset they see until they save one."""

    widgets: list[Widget]
    source: Literal["saved", "preset"]
    preset: str | None = Field(default=None, description="The preset shown when not saved")
    updated_at: datetime | None = None


class Preset(BaseModel):
    name: str
    title: str
    widgets: list[Widget]


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "default"


def _w(kind: WidgetType, x: int, y: int, w: int, h: int) -> Widget:
    return Widget(type=kind, x=x, y=y, w=w, h=h)


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        title="Everything at a glance",
        widgets=[
            _w("cluster_summary", 0, 0, 4, 4),
            _w("my_jobs", 4, 0, 8, 4),
            _w("partition_load", 0, 4, 6, 4),
            _w("node_heatmap", 6, 4, 6, 4),
            _w("notifications", 0, 8, 4, 4),
            _w("quick_submit", 4, 8, 5, 4),
            _w("storage", 9, 8, 3, 4),
        ],
    ),
    "minimal": Preset(
        name="minimal",
        title="Just my jobs",
        widgets=[_w("my_jobs", 0, 0, 8, 5), _w("cluster_summary", 8, 0, 4, 5)],
    ),
}
DEFAULT_PRESET = "default"


def presets() -> list[Preset]:
    return list(PRESETS.values())


def _preset(name: str) -> Preset:
    found = PRESETS.get(name)
    if found is None:
        raise InvalidInput(f"No preset {name!r}. Known: {', '.join(sorted(PRESETS))}.")
    return found


def get_layout(session: Session, who: Principal) -> Layout:
    """The saved layout, or the default preset when the user has none."""
    row = session.get(DashboardLayout, who.username)
    if row is None:
        return Layout(
            widgets=list(PRESETS[DEFAULT_PRESET].widgets), source="preset", preset=DEFAULT_PRESET
        )
    widgets: list[Widget] = []
    for item in row.widgets:
        try:
            widgets.append(Widget.model_validate(item))
        except ValueError:  # a widget type removed since it was saved: leave it out
            continue
    return Layout(widgets=widgets, source="saved", updated_at=row.updated_at)


def save_layout(session: Session, who: Principal, layout: LayoutIn) -> Layout:
    """Store the user's layout, replacing the one they had (insert or update)."""
    data = [w.model_dump() for w in layout.widgets]
    now = datetime.now(UTC)
    row = session.get(DashboardLayout, who.username)
    if row is None:
        try:
            with session.begin_nested():
                session.add(DashboardLayout(username=who.username, widgets=data, updated_at=now))
        except IntegrityError:  # another tab saved first: update that row instead
            row = session.get(DashboardLayout, who.username)
    if row is not None:
        row.widgets = data
        row.updated_at = now
    session.flush()
    return Layout(widgets=list(layout.widgets), source="saved", updated_at=now)


def reset_layout(session: Session, who: Principal, preset: str = DEFAULT_PRESET) -> Layout:
    """Back to a preset: ``default`` forgets the saved layout; another preset is saved."""
    chosen = _preset(preset)
    if chosen.name == DEFAULT_PRESET:
        row = session.get(DashboardLayout, who.username)
        if row is not None:
            session.delete(row)
            session.flush()
        return Layout(widgets=list(chosen.widgets), source="preset", preset=chosen.name)
    return save_layout(session, who, LayoutIn(widgets=list(chosen.widgets)))
