"""What the Apptainer catalog lists: the image and metadata models, the URL-safe
image ids, and the walk of the image directories (one sub-directory deep)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IMAGE_SUFFIX = ".sif"
#: Characters kept in an image id as they are; everything else becomes ``_``.
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class ImageMetadata(BaseModel):
    """What an image says about itself (labels) or what its file name and sidecar say."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Software name, e.g. python")
    version: str | None = Field(default=None, description="Software version, e.g. 3.11")
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    gpu: bool = Field(default=False, description="Built for GPU jobs (runs with --nv)")
    apps: list[str] = Field(default_factory=list, description="SCIF apps in the image")
    source: Literal["inspect", "file"] = Field(
        description="inspect: apptainer inspect; file: file name and optional sidecar"
    )


class Image(BaseModel):
    """One ``.sif`` file of the catalog."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable, URL-safe id from the path, e.g. compute--python_3.11")
    name: str = Field(description="File name, e.g. python_3.11.sif")
    path: Path
    category: str | None = Field(description="Sub-directory the image is in, if any")
    size_bytes: int
    modified: datetime
    metadata: ImageMetadata


class ScanResult(BaseModel):
    """What a scan changed, by image id."""

    added: int
    removed: int
    updated: int
    unchanged: int
    total: int
    inspect_calls: int = Field(description="apptainer inspect runs this scan needed")
    problems: list[str] = Field(default_factory=list, description="Unreadable directories")
    scanned_at: datetime


@dataclass(frozen=True)
class FoundImage:
    """An image file found by the directory walk, before its metadata is known."""

    path: Path
    relative: PurePosixPath
    category: str | None
    stat: os.stat_result


# --- ids -------------------------------------------------------------------------------


def image_id(relative: PurePosixPath) -> str:
    """The URL-safe id of the image at ``relative`` (``compute/python_3.11.sif``).

    Path parts are joined with ``--``. A part that had to be changed to be URL-safe,
    or that could blur the ``--`` separator, gets a short hash of the path appended,
    so two different paths never end up with the same id.
    """
    parts = [*relative.parts[:-1], relative.name.removesuffix(IMAGE_SUFFIX)]
    cleaned = [_UNSAFE_ID_CHARS.sub("_", part) for part in parts]
    lossy = cleaned != parts or any(_blurs_separator(part) for part in parts)
    ident = "--".join(cleaned)
    return f"{ident}-{short_hash(str(relative))}" if lossy else ident


def _blurs_separator(part: str) -> bool:
    return "--" in part or part.startswith("-") or part.endswith("-")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- walking the directories -----------------------------------------------------------


def _entries(directory: Path, problems: list[str]) -> list[os.DirEntry[str]]:
    """Visible entries of ``directory`` in name order (so ids are assigned stably);
    none, with a problem noted, when it cannot be read."""
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"Cannot read image directory {directory}: {exc.strerror or exc}")
        return []


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.name.endswith(IMAGE_SUFFIX) and entry.is_file()


def walk_images(root: Path, problems: list[str]) -> Iterable[FoundImage]:
    """Images in ``root`` and in its direct sub-directories; deeper levels are ignored."""
    for entry in _entries(root, problems):
        try:
            if entry.is_dir():
                yield from _walk_category(root, entry.name, problems)
            elif _is_image(entry):
                yield FoundImage(Path(entry.path), PurePosixPath(entry.name), None, entry.stat())
        except OSError as exc:  # vanished or unreadable while we looked
            problems.append(f"Cannot read {entry.path}: {exc.strerror or exc}")


def _walk_category(root: Path, category: str, problems: list[str]) -> Iterable[FoundImage]:
    for entry in _entries(root / category, problems):
        if _is_image(entry):
            relative = PurePosixPath(category, entry.name)
            yield FoundImage(Path(entry.path), relative, category, entry.stat())
