"""Checks on rendered pages shared by the unit and integration page tests.

``untranslated`` finds English catalog strings that a Korean page still shows: every
text node and labelling attribute is compared with the English message ids of the
catalog (those whose Korean translation differs from the English).
``page_assets`` adds up the scripts and style sheets one page loads, module imports
included, for the 200 KB budget.
"""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from babel.messages.pofile import read_po

from hpcportal.web.common import STATIC_DIR
from hpcportal.web.i18n import JS_MESSAGES, LOCALE_DIR

_ATTRIBUTES = ("aria-label", "title", "placeholder", "alt", "label")
_PLACEHOLDER = re.compile(r"%\(\w+\)s")


_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)


class _Text(HTMLParser):
    """Visible texts and labelling attributes, except inside ``translate="no"`` (data:
    job names, Slurm's reasons...), scripts and styles; and the page's assets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.assets: list[tuple[str, str]] = []
        self._open: list[tuple[str, bool]] = []

    def _skipping(self) -> bool:
        return any(skip for _, skip in self._open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.assets.append(("script", values["src"] or ""))
        if tag == "link" and values.get("rel") == "stylesheet" and values.get("href"):
            self.assets.append(("style", values["href"] or ""))
        skip = tag in ("script", "style") or values.get("translate") == "no"
        if not (skip or self._skipping()):
            for name in _ATTRIBUTES:
                if values.get(name):
                    self.texts.append(values[name] or "")
        if tag not in _VOID:
            self._open.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        if not self._skipping() and data.strip():
            self.texts.append(data)


def _parse(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def english_messages() -> dict[str, str]:
    """English message id -> Korean translation, for ids the translation changes."""
    with (LOCALE_DIR / "ko" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale="ko")
    return {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and m.string and m.string != m.id and not str(m.id).isupper()
    }


def untranslated(html: str, messages: dict[str, str] | None = None) -> list[str]:
    """Texts of a Korean page that are (or start with) an English catalog message."""
    messages = messages if messages is not None else english_messages()
    # A message with placeholders matches as a pattern; plain ones must match exactly.
    patterns = [
        re.compile("^" + _PLACEHOLDER.sub(".+?", re.escape(m).replace("%%", "%")) + "$")
        for m in messages
        if _PLACEHOLDER.search(m)
    ]
    plain = {m for m in messages if not _PLACEHOLDER.search(m)}
    found = []
    for text in _parse(html).texts:
        normal = " ".join(text.split())
        if normal in plain or any(p.match(normal) for p in patterns):
            found.append(normal)
    return found


def js_texts_missing() -> list[str]:
    return [key for key in JS_MESSAGES if not JS_MESSAGES[key]]


_IMPORT = re.compile(
    r"""(?:import|export)\s[^"';]*?from\s*["'](\./[^"']+)["']|import\s*["'](\./[^"']+)["']"""
)


def _module_closure(path: Path, seen: set[Path]) -> None:
    if path in seen or not path.exists():
        return
    seen.add(path)
    for match in _IMPORT.finditer(path.read_text()):
        relative = match.group(1) or match.group(2)
        _module_closure((path.parent / relative).resolve(), seen)


def page_assets(html: str) -> dict[str, int]:
    """Every JS and CSS file a page loads (module imports followed), with its size."""
    files: set[Path] = set()
    for kind, url in _parse(html).assets:
        path = urlsplit(url).path
        assert path.startswith("/static/"), f"{kind} from outside /static: {url}"
        file = (STATIC_DIR / path.removeprefix("/static/")).resolve()
        if kind == "script" and file.suffix == ".js":
            _module_closure(file, files)
        else:
            files.add(file)
    return {str(f.relative_to(STATIC_DIR)): f.stat().st_size for f in sorted(files)}


def gzipped_size(files: dict[str, int]) -> int:
    return sum(len(gzip.compress((STATIC_DIR / name).read_bytes())) for name in files)
