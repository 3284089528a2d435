"""Input files for jobs: written into the user's upload area, as the user.

Every file of a request is checked before any is written (name, count, size), so a
refused request writes nothing. Files land in a fresh folder per request and are
written under a hidden temporary name, then linked into place: an existing file is
never replaced and a crash leaves no partial file under the visible name.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput, PayloadTooLarge
from hpcportal.runas import RunAs
from hpcportal.services.identity import Principal
from hpcportal.services.user_paths import user_area

_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class UploadedFile(BaseModel):
    id: str
    name: str
    path: str
    size: int
    sha256: str


@dataclass
class IncomingFile:
    name: str
    size: int
    stream: IO[bytes]


def check_name(name: str) -> str:
    """Refuse names that are paths or could hide: ``../x``, ``a/b``, ``.hidden``, NUL."""
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise InvalidInput(
            f"File name {name!r} is not allowed: give a plain name without '/', '\\\\' "
            "or control characters."
        )
    if name.startswith(".") or len(name.encode()) > 255:
        raise InvalidInput(f"File name {name!r} is not allowed: no leading dot, at most 255 bytes.")
    return name


def check_all(settings: Settings, files: list[IncomingFile]) -> None:
    if not files:
        raise InvalidInput("No files were sent; use the form field 'files'.")
    if len(files) > settings.upload_max_files:
        raise InvalidInput(f"At most {settings.upload_max_files} files per upload.")
    seen: set[str] = set()
    for f in files:
        check_name(f.name)
        if f.name in seen:
            raise InvalidInput(f"Two files are named {f.name!r}.")
        seen.add(f.name)
        if f.size > settings.upload_max_bytes:
            raise PayloadTooLarge(
                f"{f.name} is {f.size} bytes; the limit is {settings.upload_max_bytes} bytes."
            )


def store(
    settings: Settings, runas: RunAs, who: Principal, files: list[IncomingFile]
) -> list[UploadedFile]:
    """Write every file as ``who`` into a new folder of their upload area."""
    check_all(settings, files)
    root = user_area(settings, who, settings.upload_root)
    batch = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    folder = f"{root}/{batch}"
    runas.call(who.username, {"op": "mkdir", "path": folder, "mode": 0o700, "parents": True})
    stored = []
    for f in files:
        answer = runas.call(
            who.username,
            {"op": "write-file", "path": f"{folder}/{f.name}", "size": f.size, "mode": 0o600},
            payload=f.stream,
            timeout=600,
        )
        stored.append(
            UploadedFile(
                id=f"{batch}/{f.name}",
                name=f.name,
                path=str(answer["path"]),
                size=int(answer["size"]),
                sha256=str(answer["sha256"]),
            )
        )
    return stored
