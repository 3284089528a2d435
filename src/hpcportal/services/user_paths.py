"""Per-user locations from configured patterns (``{home}/hpcportal/uploads``)."""

from __future__ import annotations

import pwd

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput
from hpcportal.services.identity import Principal


def user_area(settings: Settings, who: Principal, pattern: str) -> str:
    """``pattern`` with ``{home}`` and ``{user}`` filled in for ``who``; an absolute path."""
    del settings  # patterns come from settings; kept in the signature for future keys
    home = pwd.getpwnam(who.username).pw_dir
    path = pattern.replace("{home}", home).replace("{user}", who.username)
    if not path.startswith("/") or "/../" in f"{path}/":
        raise InvalidInput(f"The configured path {pattern!r} does not give an absolute path.")
    return path.rstrip("/") or "/"
