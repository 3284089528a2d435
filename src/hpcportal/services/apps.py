"""The interactive app catalog: one folder per app, read once at start.

An app folder holds ``app.yaml`` (what the app is and which form it offers),
``script.sh.j2`` (the job script, a template rendered by the same sandboxed
environment as job templates, so every value is one shell-quoted word) and an icon.
Folders come from the apps shipped in ``hpcportal/apps`` and from the admin's
``app_dirs``; a site folder with the same id replaces the shipped one, which is how
a site changes a shipped app without editing the package.

Form fields named ``partition``, ``hours``, ``cpus``, ``memory_gb`` and ``gpus`` are
resources: they become sbatch options (argv elements), never script text. Every other
field is given to the script by name, with ``settings`` values and the session's
own (``session_id``, ``session_dir``, ``connection_file``, ``base_url``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped,unused-ignore]
from jinja2 import Template
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpcportal.config import Settings
from hpcportal.errors import Forbidden, InvalidInput, NotFound, PortalError
from hpcportal.services.identity import Principal
from hpcportal.services.template_params import Value
from hpcportal.services.template_sandbox import compile_script

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "apps"
RESOURCE_FIELDS = frozenset({"partition", "hours", "cpus", "memory_gb", "gpus"})
SESSION_VARIABLES = frozenset({"session_id", "session_dir", "connection_file", "base_url"})
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PARTITION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SELECT_VALUE = re.compile(r"^[A-Za-z0-9_.:x@+-]{1,64}$")

FieldType = Literal["partition", "integer", "select"]
Connection = Literal["vnc", "web"]


class FormField(BaseModel):
    """One launch-form field with its type, default and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: FieldType
    label: str
    help: str | None = None
    default: int | str
    min: int | None = None
    max: int | None = None
    options: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> FormField:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"field name {self.name!r} is not an identifier")
        if self.type == "integer":
            if not isinstance(self.default, int) or self.min is None or self.max is None:
                raise ValueError(f"integer field {self.name!r} needs an integer default, min, max")
            if not self.min <= self.default <= self.max:
                raise ValueError(f"field {self.name!r}: default outside min..max")
        if self.type == "select":
            if not self.options or any(not _SELECT_VALUE.fullmatch(o) for o in self.options):
                raise ValueError(f"select field {self.name!r} needs plain options")
            if self.default not in self.options:
                raise ValueError(f"field {self.name!r}: default is not one of the options")
        if (self.name == "partition") != (self.type == "partition"):
            raise ValueError("the field 'partition', and only it, has type partition")
        if self.name in RESOURCE_FIELDS - {"partition"} and self.type != "integer":
            raise ValueError(f"the field {self.name!r} must have type integer")
        return self

    def coerce(self, raw: object) -> int | str:
        """The value a person gave, checked against this field's limits."""
        if self.type == "integer":
            return self._integer(raw)
        text = str(raw).strip() if raw is not None else ""
        if self.type == "select":
            if text not in self.options:
                raise InvalidInput(f"{self.label}: choose one of {', '.join(self.options)}.")
            return text
        if not _PARTITION.fullmatch(text):
            raise InvalidInput(f"{self.label}: give a partition name.")
        return text

    def _integer(self, raw: object) -> int:
        if isinstance(raw, bool):
            raise InvalidInput(f"{self.label}: give a whole number.")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise InvalidInput(f"{self.label}: give a whole number.") from None
        assert self.min is not None and self.max is not None  # checked at load
        if not self.min <= value <= self.max:
            raise InvalidInput(f"{self.label}: give a number from {self.min} to {self.max}.")
        return value


class AppDefinition(BaseModel):
    """What ``app.yaml`` says."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    category: str = "Apps"
    icon: str | None = None
    connection: Connection
    groups: list[str] = []
    form: list[FormField] = []
    settings: dict[str, str | int | float | bool] = {}

    @model_validator(mode="after")
    def _consistent(self) -> AppDefinition:
        if not _ID.fullmatch(self.id):
            raise ValueError(f"app id {self.id!r}: use lower-case letters, digits, - and _")
        names = [f.name for f in self.form]
        if len(names) != len(set(names)):
            raise ValueError("two form fields have the same name")
        clash = (set(names) | set(self.settings)) & SESSION_VARIABLES
        if clash or set(names) & set(self.settings):
            raise ValueError(f"names used twice or reserved: {sorted(clash) or names}")
        if any(not _NAME.fullmatch(k) for k in self.settings):
            raise ValueError("settings keys must be identifiers")
        return self


@dataclass(frozen=True)
class App:
    """A loaded app: its definition, its compiled script and where it came from."""

    definition: AppDefinition
    folder: Path
    script: Template

    @property
    def id(self) -> str:
        return self.definition.id

    def allowed(self, who: Principal) -> bool:
        """Everyone, unless the app names groups; then members of one of them."""
        groups = self.definition.groups
        return not groups or any(g in who.groups for g in groups)

    def icon_path(self) -> Path | None:
        icon = self.definition.icon
        if icon is None or "/" in icon or icon.startswith("."):
            return None
        path = self.folder / icon
        return path if path.is_file() else None

    def options(self, raw: Mapping[str, object]) -> dict[str, int | str]:
        """Every field's value: the given one checked, else the default."""
        known = {f.name for f in self.definition.form}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInput(f"This app has no field {unknown[0]!r}.")
        return {
            f.name: f.coerce(raw[f.name]) if raw.get(f.name) not in (None, "") else f.default
            for f in self.definition.form
        }

    def script_values(
        self, options: Mapping[str, int | str], session: Mapping[str, str]
    ) -> dict[str, Value]:
        """What the script template sees: non-resource fields, settings, session values."""
        values: dict[str, Value] = {k: v for k, v in options.items() if k not in RESOURCE_FIELDS}
        values.update(self.definition.settings)
        values.update(session)
        return values


class AppCatalog:
    """The apps of this portal, by id."""

    def __init__(self, apps: Iterable[App], problems: Iterable[str] = ()) -> None:
        self._apps = {app.id: app for app in apps}
        self.problems = list(problems)

    @classmethod
    def load(cls, settings: Settings) -> AppCatalog:
        """Read the shipped folder (if enabled), then each ``app_dirs`` folder in order."""
        bases = ([SHIPPED_DIR] if settings.include_shipped_apps else []) + list(settings.app_dirs)
        apps: dict[str, App] = {}
        problems: list[str] = []
        for base in bases:
            if not base.is_dir():
                problems.append(f"{base}: not a folder")
                continue
            for folder in sorted(p for p in base.iterdir() if (p / "app.yaml").is_file()):
                try:
                    app = load_app(folder)
                except PortalError as exc:
                    problems.append(f"{folder}: {exc.message}")
                    log.warning("interactive app %s skipped: %s", folder, exc.message)
                    continue
                apps[app.id] = app
        return cls(apps.values(), problems)

    def visible(self, who: Principal) -> list[App]:
        """The apps ``who`` may launch, by category then name."""
        apps = [a for a in self._apps.values() if a.allowed(who)]
        return sorted(apps, key=lambda a: (a.definition.category, a.definition.name))

    def get(self, app_id: str, who: Principal) -> App:
        """The app, if it exists and ``who`` may use it (403 names the groups)."""
        app = self._apps.get(app_id)
        if app is None:
            raise NotFound(f"There is no interactive app {app_id[:64]!r}.")
        if not app.allowed(who):
            groups = ", ".join(app.definition.groups)
            raise Forbidden(f"{app.definition.name} is available to members of: {groups}.")
        return app


def load_app(folder: Path) -> App:
    """One app folder, checked: its YAML against the schema, its script compiled."""
    try:
        data: Any = yaml.safe_load((folder / "app.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"app.yaml cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("app.yaml must be a mapping")
    try:
        definition = AppDefinition.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"app.yaml {where}: {first['msg']}") from None
    if definition.id != folder.name:
        raise InvalidInput(f"app.yaml id {definition.id!r} differs from its folder name")
    try:
        source = (folder / "script.sh.j2").read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"script.sh.j2 cannot be read: {exc}") from None
    return App(definition, folder, compile_script(source))
