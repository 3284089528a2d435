"""Where a user's files are: the file areas (roots) of the settings filled in for a
person, and the root-relative paths and names the portal accepts.

Paths are checked twice: here (``clean_path``: no ``..``, no absolute path, no NUL,
and no second percent-decoding — the router decodes once, so ``%2e%2e%2f`` arrives
as ``../`` and is refused) and again by the helper, which walks the path from the
root's descriptor with ``O_NOFOLLOW`` and refuses a link that leads out of the root.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput, NotFound
from hpcportal.services.identity import Principal

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

# --- roots and paths ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Root:
    name: str
    path: str


def fill(pattern: str, who: Principal) -> str:
    """A root pattern for ``who``: ``{home}`` and ``{user}`` replaced; an absolute path."""
    home = pwd.getpwnam(who.username).pw_dir
    path = pattern.replace("{home}", home).replace("{user}", who.username)
    if not path.startswith("/") or "\0" in path or "/../" in f"{path}/":
        raise InvalidInput(f"The configured file root {pattern!r} is not an absolute path.")
    return path.rstrip("/") or "/"


def roots_of(settings: Settings, who: Principal) -> list[Root]:
    return [Root(r.name, fill(r.path, who)) for r in settings.file_roots]


def root_named(settings: Settings, who: Principal, name: str) -> Root:
    for root in settings.file_roots:
        if root.name == name:
            return Root(root.name, fill(root.path, who))
    known = ", ".join(r.name for r in settings.file_roots)
    raise NotFound(f"There is no file area {name!r}; known: {known}.")


def clean_path(path: str) -> str:
    """A root-relative path as the helper wants it, or InvalidInput.

    Refused: NUL bytes, absolute paths (also after a leading ``./``), ``..`` anywhere.
    Empty components and ``.`` are dropped (``a//./b`` is ``a/b``). Nothing is
    percent-decoded here: the router has decoded the URL once already.
    """
    if "\0" in path:
        raise InvalidInput("The path contains a NUL byte.")
    if path.startswith("/"):
        raise InvalidInput("The path must be relative to its file area, not absolute.")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidInput("The path is too long.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput("'..' is not allowed in a path.")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        raise InvalidInput("A name in the path is longer than 255 bytes.")
    return "/".join(parts)


def check_name(name: str) -> str:
    """A single file name (uploads, new names): no '/', control characters, '.' or '..'."""
    if not name or name in (".", "..") or re.search(r"[/\x00-\x1f\x7f]", name):
        raise InvalidInput(f"{name!r} is not a valid file name.")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidInput("A file name is at most 255 bytes.")
    return name
