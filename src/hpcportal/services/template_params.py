"""A template's typed parameters: their declaration, checks, and how a submitted
value (JSON, or text from a form) becomes a bounded value of the parameter's type."""

from __future__ import annotations

import keyword
import math
import re
import types
from collections.abc import Mapping, Sequence
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hpcportal.errors import InvalidInput
from hpcportal.limits import INT64_MAX
from hpcportal.services.submit_models import JobRequest

ParameterType = Literal["string", "integer", "number", "choice", "boolean", "file"]
Value = bool | int | float | str | None

MAX_STRING_LENGTH = 4096
MAX_CHOICES = 200
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Names a parameter may not take: Python keywords, Jinja literals and globals.
_RESERVED = frozenset(
    {*keyword.kwlist, "true", "false", "none", "loop", "self", "varargs", "kwargs", "caller"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)
#: C0 and C1 controls and the Unicode line separators: anything that could end a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: An upload id, ``<upload>/<file>`` as ``services.uploads`` makes them, without controls.
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}/[^/\x00-\x1f\x7f]{1,255}$")
_INTEGER = re.compile(r"^[+-]?\d{1,30}$")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _option_fields() -> tuple[frozenset[str], frozenset[str]]:
    """The ``JobRequest`` fields a parameter may set: its optional ints and strings."""
    ints, strs = set(), set()
    for name, field in JobRequest.model_fields.items():
        if get_origin(field.annotation) not in (Union, types.UnionType) or name == "script":
            continue
        kinds = set(get_args(field.annotation)) - {types.NoneType}
        if kinds == {int}:
            ints.add(name)
        elif kinds == {str}:
            strs.add(name)
    return frozenset(ints), frozenset(strs)


INT_OPTIONS, STR_OPTIONS = _option_fields()


# --- Parameters -----------------------------------------------------------------------


class TemplateParameter(BaseModel):
    """One typed input of a template, with its bounds and the option it may also set."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Identifier used in the script as {{ name }}")
    type: ParameterType
    label: str = Field(default="", max_length=200)
    help: str = Field(default="", max_length=2000)
    default: Value = None
    required: bool = False
    min: float | None = Field(
        default=None, allow_inf_nan=False, description="integer and number only"
    )
    max: float | None = Field(
        default=None, allow_inf_nan=False, description="integer and number only"
    )
    max_length: int | None = Field(default=None, ge=1, le=MAX_STRING_LENGTH)
    choices: list[str] | None = Field(default=None, description="choice only")
    option: str | None = Field(default=None, description="A JobRequest field the value sets")

    @model_validator(mode="after")
    def _consistent(self) -> TemplateParameter:
        _check_name(self.name)
        if _CONTROL.search(self.label):
            raise ValueError(f"parameter {self.name}: the label has control characters")
        self.label = self.label or self.name
        _check_bounds(self)
        _check_option(self)
        if self.default is not None:
            try:
                self.default = coerce_value(self, self.default)
            except InvalidInput as exc:
                raise ValueError(f"default: {exc.message}") from None
        return self


def _check_name(name: str) -> None:
    if not _IDENTIFIER.fullmatch(name) or name in _RESERVED:
        raise ValueError(
            f"parameter name {name!r}: use a letter or _ then letters, digits, _ "
            "(at most 64), and no Python or Jinja reserved word"
        )


def _check_bounds(p: TemplateParameter) -> None:
    where = f"parameter {p.name}"
    if (p.min is not None or p.max is not None) and p.type not in ("integer", "number"):
        raise ValueError(f"{where}: min and max are for integer and number parameters")
    if p.min is not None and p.max is not None and p.min > p.max:
        raise ValueError(f"{where}: min is larger than max")
    if p.max_length is not None and p.type != "string":
        raise ValueError(f"{where}: max_length is for string parameters")
    if (p.choices is not None) != (p.type == "choice"):
        raise ValueError(f"{where}: a choice parameter, and only one, needs choices")
    if p.choices is not None:
        if not 0 < len(p.choices) <= MAX_CHOICES or len(set(p.choices)) != len(p.choices):
            raise ValueError(f"{where}: give 1 to {MAX_CHOICES} different choices")
        if any(_CONTROL.search(c) or not 0 < len(c) <= 200 for c in p.choices):
            raise ValueError(f"{where}: choices are 1 to 200 printable characters")


def _check_option(p: TemplateParameter) -> None:
    if p.option is None:
        return
    settable = {
        "integer": INT_OPTIONS | STR_OPTIONS,
        "choice": INT_OPTIONS | STR_OPTIONS,
        "string": STR_OPTIONS,
    }.get(p.type, frozenset())
    if p.option not in settable:
        raise ValueError(
            f"parameter {p.name}: a {p.type} parameter cannot set option {p.option!r} "
            f"(it can set: {', '.join(sorted(settable)) or 'none'})"
        )


def _bad(p: TemplateParameter, message: str) -> InvalidInput:
    return InvalidInput(f"Parameter {p.name!r}: {message}")


def coerce_value(p: TemplateParameter, raw: object) -> Value:
    """``raw`` (JSON, or text from a form) as the parameter's type, within its bounds."""
    if p.type == "string":
        return _coerce_string(p, raw)
    if p.type in ("integer", "number"):
        return _coerce_number(p, raw)
    if p.type == "boolean":
        return _coerce_boolean(p, raw)
    if p.type == "choice":
        text = raw if isinstance(raw, str) else _plain_number_text(raw)
        if text is None or text not in (p.choices or []):
            raise _bad(p, f"choose one of {', '.join(p.choices or [])}")
        return text
    if not isinstance(raw, str) or not _UPLOAD_ID.fullmatch(raw) or _has_dot_part(raw):
        raise _bad(p, "give an upload id like 20261121-abc/data.csv")
    return raw


def _coerce_string(p: TemplateParameter, raw: object) -> str:
    if not isinstance(raw, str):
        raise _bad(p, "give text")
    if _CONTROL.search(raw):
        raise _bad(p, "control characters (such as newlines or tabs) are not allowed")
    limit = p.max_length or MAX_STRING_LENGTH
    if len(raw) > limit:
        raise _bad(p, f"at most {limit} characters")
    return raw


def _coerce_number(p: TemplateParameter, raw: object) -> int | float:
    kind = "a whole number" if p.type == "integer" else "a number"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _bad(p, f"give {kind}")
    try:
        value = _parse_number(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise _bad(p, f"give {kind}") from None
    too_big = _bad(p, f"give {kind} that fits in 64 bits")
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise too_big  # before isfinite, which cannot convert such an int to a float
    if not math.isfinite(value) or (p.type == "integer" and value != int(value)):
        raise _bad(p, f"give {kind}")
    if p.type == "integer":
        value = int(value)
        if not -INT64_MAX - 1 <= value <= INT64_MAX:  # 1e308 is a whole number too
            raise too_big
    if p.min is not None and value < p.min:
        raise _bad(p, f"at least {_plain_number_text(p.min)}")
    if p.max is not None and value > p.max:
        raise _bad(p, f"at most {_plain_number_text(p.max)}")
    return value


def _parse_number(text: str) -> int | float:
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else float(text)


def _coerce_boolean(p: TemplateParameter, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(p, "give true or false")


def _plain_number_text(value: object) -> str | None:
    """``3`` for 3 and 3.0, ``0.5`` for 0.5; ``None`` for what is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _has_dot_part(upload_id: str) -> bool:
    return any(part in (".", "..") or "\\" in part for part in upload_id.split("/"))


def resolve_values(
    parameters: Sequence[TemplateParameter], given: Mapping[str, object]
) -> dict[str, Value]:
    """Every parameter's value: given, else its default; refuses unknown names.

    A missing optional value is ``None`` (``False`` for a boolean), so ``{% if x %}``
    works; an empty form field counts as missing for every type but ``string``.
    """
    known = {p.name for p in parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        hint = f" Known: {', '.join(sorted(known))}." if known else " It takes none."
        raise InvalidInput(f"Unknown parameter {', '.join(map(repr, unknown))}.{hint}")
    values: dict[str, Value] = {}
    for p in parameters:
        raw = given.get(p.name)
        if raw is None or (raw == "" and p.type != "string"):
            value = p.default
        else:
            value = coerce_value(p, raw)
        if p.required and value in (None, ""):
            raise _bad(p, "a value is required")
        values[p.name] = False if value is None and p.type == "boolean" else value
    return values


def sample_values(parameters: Sequence[TemplateParameter]) -> dict[str, Value]:
    """Plausible values (the defaults, else in-bounds samples) to try a template with."""
    samples: dict[str, Value] = {
        "string": "sample",
        "boolean": False,
        "file": "upload/sample.txt",
    }
    values: dict[str, Value] = {}
    for p in parameters:
        if p.default is not None:
            values[p.name] = p.default
        elif p.type in ("integer", "number"):
            low = p.min if p.min is not None else min(1.0, p.max if p.max is not None else 1.0)
            values[p.name] = math.ceil(low) if p.type == "integer" else low
        elif p.type == "choice":
            values[p.name] = (p.choices or [""])[0]
        else:
            values[p.name] = samples[p.type]
    return values


def option_value(p: TemplateParameter, value: Value) -> Value:
    """The value as the ``JobRequest`` field its ``option`` sets wants it (text for text)."""
    if p.option in STR_OPTIONS and not isinstance(value, str):
        return _plain_number_text(value)
    return value
