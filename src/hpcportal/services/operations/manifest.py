"""A backup's manifest (``manifest.json``) and its verification.

Why a manifest: a backup is only worth something if it can be trusted at restore
time, possibly years later and on another server. Every file is listed with its size
and SHA-256, so ``restore`` refuses a backup with a changed byte, a missing or an
extra file before it changes anything. The manifest also says what the backup came
from (portal version, Alembic revision, when) and where each file goes back to.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MANIFEST = "manifest.json"
FORMAT: Literal[1] = 1

Kind = Literal["database", "config", "secret", "app"]


class BackupCorrupt(Exception):
    """The backup does not match its manifest; ``problems`` lists every difference."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10]) + (
            f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        super().__init__(f"backup {path} is damaged and was not restored: {shown}")


def _relative(value: str) -> str:
    """A path inside the backup: relative, no ``..``, so nothing is read from outside it."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{value!r} is not a path inside the backup")
    return value


class Entry(BaseModel):
    """One file of the backup; ``source`` is where it is restored to (None: the database)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Kind
    source: str | None = None
    mode: int | None = Field(default=None, ge=0, le=0o7777)

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        return _relative(value)

    @field_validator("source")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or ".." in PurePosixPath(value).parts):
            raise ValueError(f"{value!r} is not an absolute path")
        return value


class Tree(BaseModel):
    """A folder restored whole (a site apps folder): files not in the backup are removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str
    source: str
    kind: Kind

    @field_validator("dir")
    @classmethod
    def _inside(cls, value: str) -> str:
        return _relative(value)


class TableChecksum(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """What ``manifest.json`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = FORMAT
    portal_version: str
    created_at: datetime
    alembic_revision: str | None
    database_backend: str
    database_method: str | None
    tables: dict[str, TableChecksum] | None = None
    entries: list[Entry]
    trees: list[Tree] = Field(default_factory=list)
    #: Paths that did not exist when the state was kept aside (``restore`` removes them
    #: again when it rolls back); empty in a regular backup.
    absent: list[str] = Field(default_factory=list)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a time zone")
        return value.astimezone(UTC)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_for(root: Path, file: Path, kind: Kind, source: Path | None) -> Entry:
    """The manifest entry of ``file`` (already inside the backup at ``root``)."""
    mode = None if source is None else file.stat().st_mode & 0o7777
    return Entry(
        file=file.relative_to(root).as_posix(),
        size=file.stat().st_size,
        sha256=sha256_file(file),
        kind=kind,
        source=None if source is None else str(source),
        mode=mode,
    )


def write_manifest(root: Path, manifest: Manifest) -> None:
    path = root / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    path.chmod(0o600)


def read_manifest(root: Path) -> Manifest:
    """The manifest, or ``BackupCorrupt`` saying why it cannot be read."""
    path = root / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise BackupCorrupt(root, [f"{MANIFEST} is missing"]) from exc
    try:
        return Manifest.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BackupCorrupt(
            root, [f"{MANIFEST} is not JSON ({exc.msg}, line {exc.lineno})"]
        ) from exc
    except ValidationError as exc:
        problems = [
            f"{MANIFEST}: {'.'.join(str(p) for p in e['loc']) or 'top'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise BackupCorrupt(root, problems) from exc


def verify(root: Path) -> Manifest:
    """Check every file against the manifest (size, then SHA-256) and look for strays.

    Raises ``BackupCorrupt`` listing every problem; returns the manifest when all hold.
    """
    if not root.is_dir():
        raise BackupCorrupt(root, ["no such backup directory"])
    manifest = read_manifest(root)
    problems: list[str] = []
    listed = {entry.file for entry in manifest.entries}
    for entry in manifest.entries:
        path = root / entry.file
        if not path.is_file() or path.is_symlink():
            problems.append(f"{entry.file} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(
                f"{entry.file} has {path.stat().st_size} bytes, the manifest says {entry.size}"
            )
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{entry.file} does not match its SHA-256 (changed since the backup)")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative != MANIFEST and relative not in listed:
            problems.append(f"{relative} is not in the manifest")
    if manifest.database_method is not None and not any(
        e.kind == "database" for e in manifest.entries
    ):
        problems.append("the manifest names a database dump but lists no database file")
    if problems:
        raise BackupCorrupt(root, problems)
    return manifest
