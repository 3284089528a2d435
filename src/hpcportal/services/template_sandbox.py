"""The Jinja2 sandbox scripts render in, and the compile-time check of where a
template outputs values: only where one quoted shell word means what it says
(not inside quotes, backticks or an expanding here-document)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hpcportal.errors import InvalidInput
from hpcportal.services.submit_models import MAX_SCRIPT_BYTES

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
