"""From a ``JobRequest`` to sbatch's argv and the script text: pure functions, no I/O.

Form fields become sbatch options, one argv element each, never text spliced into
the script, so no value can change what the script does. The script's own
``#SBATCH`` lines are read the way sbatch reads them (only the header, up to the
first command) to report where the form and the script disagree: the command line
wins, as in sbatch, and the person is told.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from hpcportal.services.submit_models import DirectiveConflict, JobRequest

#: (JobRequest field, long option, short option or None), in argv order.
FORM_OPTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("name", "--job-name", "-J"),
    ("partition", "--partition", "-p"),
    ("account", "--account", "-A"),
    ("qos", "--qos", "-q"),
    ("nodes", "--nodes", "-N"),
    ("ntasks", "--ntasks", "-n"),
    ("cpus_per_task", "--cpus-per-task", "-c"),
    ("memory", "--mem", None),
    ("gpus", "--gpus", "-G"),
    ("time_limit", "--time", "-t"),
    ("array", "--array", "-a"),
    ("dependency", "--dependency", "-d"),
    ("work_dir", "--chdir", "-D"),
    ("output", "--output", "-o"),
    ("error", "--error", "-e"),
    ("mail_type", "--mail-type", None),
    ("mail_user", "--mail-user", None),
)
_SHORT_TO_LONG = {short: long for _, long, short in FORM_OPTIONS if short}
_GPU_OPTIONS = ("--gpus", "--gpus-per-node", "--gpus-per-task", "--gpus-per-socket")
_DIRECTIVE = re.compile(r"^#SBATCH\s")


@dataclass(frozen=True, slots=True)
class Directive:
    """One option from an ``#SBATCH`` line: long name, value, 1-based line number."""

    option: str
    value: str
    line: int


def header_lines(script: str) -> list[tuple[int, str]]:
    """The lines sbatch reads directives from: after the shebang, up to the first command."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(script.splitlines(), start=1):
        text = raw.strip()
        if number == 1 and text.startswith("#!"):
            continue
        if text and not text.startswith("#"):
            break
        lines.append((number, raw))
    return lines


def parse_directives(script: str) -> list[Directive]:
    """Every option given on the script's ``#SBATCH`` lines."""
    found: list[Directive] = []
    for number, raw in header_lines(script):
        if not _DIRECTIVE.match(raw.strip()):
            continue
        try:
            words = shlex.split(raw.strip()[len("#SBATCH") :], comments=True)
        except ValueError:
            continue
        found += _options(words, number)
    return found


def _options(words: list[str], line: int) -> list[Directive]:
    found: list[Directive] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if not eq and index < len(words) and not words[index].startswith("-"):
                value, index = words[index], index + 1
            found.append(Directive(name, value, line))
        elif word.startswith("-") and len(word) >= 2:
            name = _SHORT_TO_LONG.get(word[:2], word[:2])
            value = word[2:]
            if not value and index < len(words) and not words[index].startswith("-"):
                value, index = words[index], index + 1
            found.append(Directive(name, value.lstrip("="), line))
    return found


def form_value(request: JobRequest, field: str) -> str | None:
    value = getattr(request, field)
    if value is None or value == []:
        return None
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def form_options(request: JobRequest) -> list[str]:
    """``--option=value`` for every form field that is set, one argv element each."""
    argv = []
    for field, long, _ in FORM_OPTIONS:
        value = form_value(request, field)
        if value is not None:
            argv.append(f"{long}={value}")
    return argv


def conflicts(request: JobRequest, directives: list[Directive]) -> list[DirectiveConflict]:
    """Form fields that an ``#SBATCH`` line sets to something else."""
    out = []
    for field, long, _ in FORM_OPTIONS:
        ours = form_value(request, field)
        if ours is None:
            continue
        for directive in directives:
            if directive.option == long and _normal(directive.value) != _normal(ours):
                out.append(
                    DirectiveConflict(
                        option=long,
                        form_value=ours,
                        script_value=directive.value,
                        line=directive.line,
                        message=(
                            f"The form says {long}={ours} but line {directive.line} of the "
                            f"script says {directive.value}; the form wins, as on sbatch's "
                            "command line."
                        ),
                    )
                )
    return out


def _normal(value: str) -> str:
    return value.strip().upper()


def sets_option(directives: list[Directive], option: str) -> bool:
    return any(d.option == option for d in directives)


def wants_gpus(request: JobRequest, directives: list[Directive]) -> bool:
    """Does the job ask for GPUs (so Apptainer needs ``--nv``)?"""
    if request.gpus:
        return True
    for d in directives:
        if d.option in _GPU_OPTIONS and d.value not in ("", "0"):
            return True
        if d.option == "--gres" and "gpu" in d.value:
            return True
    return False


def environment_names(file_names: list[str]) -> list[str]:
    """``FILE_<NAME>`` variable names for input files, unique and shell-safe."""
    names: list[str] = []
    for file_name in file_names:
        stem = file_name.rsplit(".", 1)[0] if "." in file_name[1:] else file_name
        base = "FILE_" + (re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_").upper() or "INPUT")
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def directive_header(script: str) -> str:
    """The script's shebang-less ``#SBATCH`` lines, to carry over into a wrapper script."""
    return "\n".join(raw for _, raw in header_lines(script) if _DIRECTIVE.match(raw.strip()))
