"""Job templates become job requests: typed parameters, a sandboxed render, and checks.

A template's script is Jinja2; its parameter values come from whoever submits, who
may not be its author. Safety rests on several independent layers, so one mistake
does not open a hole:

1. every value a template outputs passes through ``shlex.quote`` (the environment's
   ``finalize``), so it is one shell word whatever it contains;
2. values may only be output where a shell word means what it says: not inside
   quotes, backticks or an expanding here-document (checked when a script compiles);
3. ``string`` values with control characters (newlines above all) are refused;
4. the rendered ``#SBATCH`` lines must equal those rendered with placeholders for
   every free-text value, so no value can add or change a directive;
5. the sandbox keeps templates away from Python internals, and bounds the
   operators that could build huge values.

Form-like values (cpus, partition...) do not go into the script at all: a
parameter's ``option`` sets the ``JobRequest`` field, which becomes an sbatch argv
element in ``services.submit``.
"""

from __future__ import annotations

import keyword
import math
import re
import shlex
import types
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, Union, get_args, get_origin

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpcportal.errors import InvalidInput
from hpcportal.limits import INT64_MAX
from hpcportal.services.submit_models import MAX_SCRIPT_BYTES, JobRequest

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
#: Free-text values are replaced by this when checking that values add no directive.
PLACEHOLDER = "placeholder"
_DIRECTIVE = re.compile(r"^\s*#\s*SBATCH", re.IGNORECASE)


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


# --- The environment ------------------------------------------------------------------


def _shell_word(value: object) -> str:
    """Jinja's ``finalize``: every value output becomes exactly one shell word."""
    return shlex.quote(str(value))


class ScriptEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, immutable (a render cannot change the values it was given), with
    ``*`` and ``**`` bounded so a template cannot build a value of gigabytes."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("the result of ** would be too large")
        if operator == "*" and _too_long_repeat(left, right):
            raise SecurityError("the result of * would be too large")
        return super().call_binop(context, operator, left, right)


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not isinstance(base, int) or not isinstance(exponent, int):
        return False  # floats overflow with an error, not a huge value
    return exponent > 0 and abs(base) > 1 and base.bit_length() * exponent > 4096


def _too_long_repeat(left: Any, right: Any) -> bool:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            return len(seq) * count > MAX_SCRIPT_BYTES
    if isinstance(left, int) and isinstance(right, int):
        return left.bit_length() + right.bit_length() > 8192
    return False


ENVIRONMENT = ScriptEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_shell_word,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@lru_cache(maxsize=256)
def compile_script(source: str) -> Template:
    """The compiled template, after checking its syntax and where it outputs values."""
    try:
        template = ENVIRONMENT.from_string(source)
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"Template syntax error on line {exc.lineno}: {exc.message}") from None
    for line, context in _unsafe_outputs(source):
        raise InvalidInput(
            f"Line {line}: a {{{{ }}}} value inside {context} would not stay one quoted "
            "word. Put it outside quotes (it is quoted for you), e.g. echo Hello {{ name }}."
        )
    return template


# --- Where values land in the shell ---------------------------------------------------

#: Stands for one ``{{ }}`` output in the skeleton of a script (NUL is never in a script).
_VALUE = "\x00"


def _skeleton(source: str) -> tuple[str, list[int]]:
    """The script's literal text with each output replaced by ``_VALUE``, and the
    template line of each output. Statements and comments leave no text."""
    parts: list[str] = []
    lines: list[int] = []
    for lineno, kind, text in ENVIRONMENT.lex(source):
        if kind == "data":
            parts.append(text)
        elif kind == "variable_begin":
            parts.append(_VALUE)
            lines.append(lineno)
    return "".join(parts), lines


def _unsafe_outputs(source: str) -> Iterator[tuple[int, str]]:
    """(template line, context) for each output that lands where quoting breaks."""
    skeleton, lines = _skeleton(source)
    if not lines:
        return
    contexts = _ShellScanner(skeleton).contexts()
    if len(contexts) != len(lines):  # the scanner lost count: refuse rather than guess
        yield lines[0], "a place this check cannot follow"
        return
    for index, context in enumerate(contexts):
        if context is not None:
            yield lines[index], context


class _ShellScanner:
    """Enough of POSIX shell quoting to tell in which context each value lands.

    Deliberately approximate and erring towards refusal: ``"$(echo {{ x }})"`` is
    safe in a real shell but refused here, which is an easy rewrite for an author.
    """

    _COMMENT_AFTER = " \t\n;&|()"

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.found: list[str | None] = []
        self.heredocs: list[tuple[str, bool, bool]] = []  # delimiter, expanding, strip tabs

    def contexts(self) -> list[str | None]:
        """For each value in order: ``None`` when safe, else where it landed."""
        while self.i < len(self.text):
            self._plain()
        return self.found

    def _plain(self) -> None:
        text, i = self.text, self.i
        ch = text[i]
        self.i += 1
        if ch == "\\":
            self._escaped()
        elif ch in "'\"`":
            self._quoted(ch)
        elif ch == "#" and (i == 0 or text[i - 1] in self._COMMENT_AFTER):
            self._comment()
        elif text.startswith("<<<", i):
            self.i += 2  # a here-string: an ordinary word follows
        elif text.startswith("<<", i):
            self._heredoc_start()
        elif ch == "\n" and self.heredocs:
            self._heredoc_bodies()
        elif ch == _VALUE:
            # After "$" the quoted word would become $'...' (escapes interpreted) or $name.
            self.found.append("a $ expansion" if i > 0 and text[i - 1] == "$" else None)

    def _quoted(self, quote: str) -> None:
        names = {"'": "single quotes", '"': "double quotes", "`": "backticks"}
        while self.i < len(self.text):
            ch = self.text[self.i]
            self.i += 1
            if ch == "\\" and quote != "'":
                self._escaped()
            elif ch == quote:
                return
            elif ch == _VALUE:
                self.found.append(names[quote])

    def _escaped(self) -> None:
        """Skip the character a backslash makes literal; a value there would lose its
        opening quote (``\\'$(id)'``), so it is refused."""
        if self.text.startswith(_VALUE, self.i):
            self.found.append("a backslash escape")
        self.i += 1

    def _comment(self) -> None:
        while self.i < len(self.text) and self.text[self.i] != "\n":
            if self.text[self.i] == _VALUE:
                self.found.append(None)  # a comment runs nothing; newlines are refused
            self.i += 1

    def _heredoc_start(self) -> None:
        text = self.text
        self.i += 1  # the second "<"
        strip_tabs = text.startswith("-", self.i)
        self.i += strip_tabs
        while self.i < len(text) and text[self.i] in " \t":
            self.i += 1
        start = self.i
        while self.i < len(text) and text[self.i] not in " \t\n;&|<>()":
            self.i += 1
        word = text[start : self.i]
        if _VALUE in word:
            self.found.extend("a here-document delimiter" for _ in range(word.count(_VALUE)))
        elif word:
            quoted = any(q in word for q in "'\"\\")
            delimiter = word.replace("'", "").replace('"', "").replace("\\", "")
            self.heredocs.append((delimiter, not quoted, strip_tabs))

    def _heredoc_bodies(self) -> None:
        for delimiter, expanding, strip_tabs in self.heredocs:
            while self.i < len(self.text):
                end = self.text.find("\n", self.i)
                end = len(self.text) if end < 0 else end
                line = self.text[self.i : end]
                self.i = end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
                context = "an unquoted here-document" if expanding else None
                self.found.extend(context for _ in range(line.count(_VALUE)))
        self.heredocs = []


# --- Rendering ------------------------------------------------------------------------


def _render(template: Template, values: Mapping[str, Value]) -> str:
    """The template's text for ``values``; any failure inside it is a 422."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(dict(values)):
            size += len(chunk)
            if size > MAX_SCRIPT_BYTES:
                raise InvalidInput(f"The rendered script is larger than {MAX_SCRIPT_BYTES} bytes.")
            parts.append(chunk)
    except InvalidInput:
        raise
    except SecurityError as exc:
        raise InvalidInput(f"The template is not allowed to do that{_where(exc)}: {exc}") from None
    except TemplateError as exc:
        raise InvalidInput(f"The template failed{_where(exc)}: {exc.message}") from None
    except Exception as exc:  # the template is user code: its errors are the user's
        raise InvalidInput(
            f"The template failed{_where(exc)}: {type(exc).__name__}: {exc}"
        ) from None
    return "".join(parts)


def render(template: Template, values: Mapping[str, Value]) -> str:
    """The compiled template's text for ``values`` (422 on any failure inside it):
    for scripts whose values are checked elsewhere, such as interactive apps'."""
    return _render(template, values)


def _where(exc: BaseException) -> str:
    """`` on line N`` from the template's frame in the traceback (Jinja rewrites it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" on line {line}" if line else ""


def directives(script: str) -> list[str]:
    """The script's ``#SBATCH`` lines (generously matched: case and spaces ignored)."""
    return [line.rstrip() for line in script.splitlines() if _DIRECTIVE.match(line)]


def _placeholders(
    parameters: Sequence[TemplateParameter], values: Mapping[str, Value], keep: str | None = None
) -> dict[str, Value]:
    """``values`` with free-text ones (string, file) replaced by a harmless word.

    Numbers, booleans and choices keep their value: they cannot carry text, and
    ``{% if gpu %}#SBATCH ...{% endif %}`` must still work. Empty stays empty.
    """
    free_text = {p.name for p in parameters if p.type in ("string", "file")} - {keep}
    return {
        name: PLACEHOLDER if name in free_text and value not in (None, "") else value
        for name, value in values.items()
    }


def render_script(
    source: str, parameters: Sequence[TemplateParameter], values: Mapping[str, Value]
) -> str:
    """The rendered script, refused if a free-text value changed its ``#SBATCH`` lines."""
    template = compile_script(source)
    script = _render(template, values)
    expected = directives(_render(template, _placeholders(parameters, values)))
    if directives(script) != expected:
        culprits = [
            repr(p.name)
            for p in parameters
            if directives(_render(template, _placeholders(parameters, values, keep=p.name)))
            != expected
        ]
        raise InvalidInput(
            f"The value of {', '.join(culprits) or 'a parameter'} changes the script's "
            "#SBATCH directives; a value must never do that. Templates set options "
            "through a parameter's 'option', or with a choice parameter."
        )
    return script


# --- Job requests ---------------------------------------------------------------------


def _describe(exc: ValidationError, setters: Mapping[str, str]) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        who = f"Parameter {setters[field]!r} (sets {field})" if field in setters else field
        parts.append(f"{who}: {err['msg']}" if who else err["msg"])
    return "; ".join(parts)


def make_job_request(
    script: str, fields: Mapping[str, Any], setters: Mapping[str, str] | None = None
) -> JobRequest:
    """A validated ``JobRequest``; ``setters`` maps option -> parameter for messages."""
    if "script" in fields:
        raise InvalidInput("Options cannot set 'script': it comes from the template.")
    try:
        return JobRequest(script=script, **fields)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc, setters or {})) from None


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A template's default options, checked by building a ``JobRequest`` from them."""
    request = make_job_request("#!/bin/sh\ntrue\n", options)
    return request.model_dump(mode="json", exclude_unset=True, exclude={"script"})


def _option_value(p: TemplateParameter, value: Value) -> Value:
    if p.option in STR_OPTIONS and not isinstance(value, str):
        return _plain_number_text(value)
    return value


def build_job_request(
    script: str,
    parameters: Sequence[TemplateParameter],
    values: Mapping[str, Value],
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> JobRequest:
    """Options by precedence: template defaults, then parameters, then the caller's
    explicit overrides. Input files from all three are kept, in that order."""
    fields: dict[str, Any] = dict(defaults)
    setters: dict[str, str] = {}
    files: list[str] = list(defaults.get("input_files", []))
    for p in parameters:
        value = values.get(p.name)
        if p.option is not None and value is not None:
            fields[p.option] = _option_value(p, value)
            setters[p.option] = p.name
        if p.type == "file" and isinstance(value, str):
            files.append(value)
    fields.update(overrides)
    override_files = overrides.get("input_files", [])
    if not isinstance(override_files, list):
        raise InvalidInput("input_files: give a list of upload ids")
    files.extend(override_files)
    fields["input_files"] = list(dict.fromkeys(files))
    return make_job_request(script, fields, setters)


def render_job(
    source: str,
    parameters: Sequence[TemplateParameter],
    defaults: Mapping[str, Any],
    given: Mapping[str, object],
    overrides: Mapping[str, Any] | None = None,
) -> JobRequest:
    """Parameter values in, a validated ``JobRequest`` out (nothing is submitted)."""
    values = resolve_values(parameters, given)
    script = render_script(source, parameters, values)
    return build_job_request(script, parameters, values, defaults, overrides or {})


def check_template(
    source: str, parameters: Sequence[TemplateParameter], options: Mapping[str, Any]
) -> dict[str, Any]:
    """Refuse a template that cannot work, when it is saved rather than when used.

    It must compile, output values only where quoting holds, render with sample
    values without touching its directives, and have valid default options (which
    are returned normalised).
    """
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise InvalidInput("Parameter names must be unique.")
    render_script(source, parameters, sample_values(parameters))
    return validate_options(options)
