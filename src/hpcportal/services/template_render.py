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

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.exceptions import SecurityError
from pydantic import ValidationError

from hpcportal.errors import InvalidInput
from hpcportal.services.submit_models import MAX_SCRIPT_BYTES, JobRequest
from hpcportal.services.template_params import (
    INT_OPTIONS,
    STR_OPTIONS,
    ParameterType,
    TemplateParameter,
    Value,
    coerce_value,
    option_value,
    resolve_values,
    sample_values,
)
from hpcportal.services.template_sandbox import ENVIRONMENT, ScriptEnvironment, compile_script

__all__ = [
    "ENVIRONMENT",
    "INT_OPTIONS",
    "PLACEHOLDER",
    "STR_OPTIONS",
    "ParameterType",
    "ScriptEnvironment",
    "TemplateParameter",
    "Value",
    "build_job_request",
    "check_template",
    "coerce_value",
    "compile_script",
    "directives",
    "make_job_request",
    "render",
    "render_job",
    "render_script",
    "resolve_values",
    "sample_values",
    "validate_options",
]

#: Free-text values are replaced by this when checking that values add no directive.
PLACEHOLDER = "placeholder"
_DIRECTIVE = re.compile(r"^\s*#\s*SBATCH", re.IGNORECASE)


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
            fields[p.option] = option_value(p, value)
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
