"""The Apptainer image catalog, and wrapping a batch script so it runs inside an image.

Administrators drop ``*.sif`` files into the directories named by
``apptainer_image_dirs`` (directly, or one sub-directory deep: the sub-directory is the
image's *category*). The catalog lists them with their metadata so users can pick one
when they submit a job.

Metadata comes from ``apptainer inspect --json`` when the configured program exists on
this host, otherwise from the file name (``python_3.11.sif``: ``python`` version
``3.11``) and an optional YAML sidecar next to the image. Portal hosts often have no
Apptainer installed even though the compute nodes do, hence the sidecar. When inspect
runs, the image's own labels are the truth and sidecars are not read; an image that
inspect fails on falls back to its file name and sidecar (and is not retried until
the file changes, so one corrupt image cannot cost a command on every scan).

Inspecting an image starts a process, so the catalog remembers each image's metadata
by path, modification time and size: a re-scan of 1,000 unchanged images runs no
command at all, only ``stat``. Reads reuse the last scan and re-scan (cheaply) at most
every ``max_age_seconds``; ``scan()`` forces one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel, ConfigDict, Field

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

IMAGE_SUFFIX = ".sif"
#: Sidecars are a few lines of YAML; anything larger is a mistake, not metadata.
SIDECAR_MAX_BYTES = 64 * 1024
#: Characters kept in an image id as they are; everything else becomes ``_``.
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
#: ``python_3.11`` / ``cuda-12.2`` / ``tool_v2`` / ``ubuntu_latest``: name, then version.
_NAME_VERSION = re.compile(r"^(?P<name>.+?)[_-](?P<version>v?\d[\w.+-]*|latest)$")
_TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
#: Environment variables passed to ``apptainer inspect``: enough to run, plus
#: Apptainer's own configuration, and nothing of the portal's (its secrets).
_INSPECT_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "USER")
_INSPECT_ENV_PREFIXES = ("APPTAINER_", "SINGULARITY_")

#: Runs ``argv`` with a timeout (seconds) and returns its standard output; raises
#: ``OSError``, ``subprocess.SubprocessError`` or ``ValueError`` when it fails.
InspectRunner = Callable[[Sequence[str], float], str]


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
class _Signature:
    """What must stay equal for cached metadata to be reused."""

    path: Path
    mtime_ns: int
    size: int
    sidecar: tuple[str, int, int] | None
    inspected: bool


@dataclass(frozen=True)
class _Found:
    """An image file found by the directory walk, before its metadata is known."""

    path: Path
    relative: PurePosixPath
    category: str | None
    stat: os.stat_result


@dataclass
class _Built:
    """A catalog being built by a scan, swapped in whole when it is complete."""

    images: dict[str, Image] = field(default_factory=dict)
    signatures: dict[str, _Signature] = field(default_factory=dict)
    cache: dict[Path, tuple[_Signature, ImageMetadata]] = field(default_factory=dict)
    inspect_calls: int = 0


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
    return f"{ident}-{_short_hash(str(relative))}" if lossy else ident


def _blurs_separator(part: str) -> bool:
    return "--" in part or part.startswith("-") or part.endswith("-")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- walking the directories -----------------------------------------------------------


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """Visible entries of ``directory`` in name order (so ids are assigned stably)."""
    with os.scandir(directory) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.name.endswith(IMAGE_SUFFIX) and entry.is_file()


def _walk(root: Path, problems: list[str]) -> Iterable[_Found]:
    """Images in ``root`` and in its direct sub-directories; deeper levels are ignored."""
    try:
        entries = _entries(root)
    except OSError as exc:
        problems.append(f"Cannot read image directory {root}: {exc.strerror or exc}")
        return
    for entry in entries:
        try:
            if entry.is_dir():
                yield from _walk_category(root, entry.name, problems)
            elif _is_image(entry):
                yield _Found(Path(entry.path), PurePosixPath(entry.name), None, entry.stat())
        except OSError as exc:  # vanished or unreadable while we looked
            problems.append(f"Cannot read {entry.path}: {exc.strerror or exc}")


def _walk_category(root: Path, category: str, problems: list[str]) -> Iterable[_Found]:
    directory = root / category
    try:
        entries = _entries(directory)
    except OSError as exc:
        problems.append(f"Cannot read image directory {directory}: {exc.strerror or exc}")
        return
    for entry in entries:
        if _is_image(entry):
            relative = PurePosixPath(category, entry.name)
            yield _Found(Path(entry.path), relative, category, entry.stat())


# --- metadata from the file name and a sidecar -----------------------------------------


def parse_file_name(file_name: str) -> tuple[str, str | None]:
    """``python_3.11.sif`` -> ``("python", "3.11")``; ``ubuntu.sif`` -> ``("ubuntu", None)``."""
    stem = file_name.removesuffix(IMAGE_SUFFIX)
    match = _NAME_VERSION.match(stem)
    if match is None:
        return stem, None
    return match["name"], match["version"]


def sidecar_path(image: Path) -> Path | None:
    """``IMAGE.sif.yaml``, else ``IMAGE.yaml``, whichever exists first."""
    for candidate in (image.with_name(image.name + ".yaml"), image.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    return None


def _sidecar_signature(image: Path) -> tuple[str, int, int] | None:
    found = sidecar_path(image)
    if found is None:
        return None
    try:
        st = found.stat()
    except OSError:
        return None
    return (found.name, st.st_mtime_ns, st.st_size)


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's mapping, or ``{}`` (with a warning) when it is unusable.

    A broken sidecar must not hide the image, so errors are logged, not raised.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(SIDECAR_MAX_BYTES + 1)
        if len(raw) > SIDECAR_MAX_BYTES:
            raise ValueError(f"larger than {SIDECAR_MAX_BYTES} bytes")
        data = yaml.safe_load(raw.decode("utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        log.warning("ignoring Apptainer sidecar %s: %s", path, exc)
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring Apptainer sidecar %s: not a mapping", path)
        return {}
    return {str(k): v for k, v in data.items()}


def _text(value: object) -> str | None:
    """A scalar as text. YAML reads ``version: 3.10`` as the float 3.1: quote versions."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, raw in value.items() if (v := _text(raw)) is not None}


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value)
    return text is not None and text.lower() in _TRUE_WORDS


def _app_list(value: object) -> list[str]:
    """Apps as a YAML list, a mapping (name -> anything) or a comma-separated string."""
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):
        return [t for item in value if (t := _text(item))]
    text = _text(value)
    return [a.strip() for a in text.split(",") if a.strip()] if text else []


def metadata_from_file(path: Path) -> ImageMetadata:
    """Metadata when Apptainer is not available: the file name, then the sidecar."""
    name, version = parse_file_name(path.name)
    found = sidecar_path(path)
    side = read_sidecar(found) if found else {}
    return ImageMetadata(
        name=_text(side.get("name")) or name,
        version=_text(side.get("version")) or version,
        description=_text(side.get("description")),
        labels=_str_map(side.get("labels")),
        gpu=_truthy(side.get("gpu")),
        apps=_app_list(side.get("apps")),
        source="file",
    )


# --- metadata from apptainer inspect ---------------------------------------------------

_LABEL_NAME = ("org.opencontainers.image.title", "org.label-schema.name", "name")
_LABEL_VERSION = ("org.opencontainers.image.version", "org.label-schema.version", "version")
_LABEL_DESCRIPTION = (
    "org.opencontainers.image.description",
    "org.label-schema.description",
    "description",
)


def _dig(doc: object, keys: Sequence[str]) -> object:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def labels_from_inspect(doc: object) -> dict[str, str]:
    """Labels from any known shape of ``inspect --json``.

    Apptainer >= 1.0 and Singularity >= 3.2 nest them under ``data.attributes.labels``;
    Singularity 3.0/3.1 used ``attributes.labels``, sometimes as a JSON *string*; older
    releases printed the bare label map.
    """
    for keys in (("data", "attributes", "labels"), ("attributes", "labels"), ("labels",)):
        found = _dig(doc, keys)
        if isinstance(found, str):
            found = _json_or_none(found)
        if isinstance(found, dict):
            return _str_map(found)
    if isinstance(doc, dict) and doc and all(isinstance(v, str) for v in doc.values()):
        return _str_map(doc)
    return {}


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _label(labels: Mapping[str, str], keys: Sequence[str]) -> str | None:
    """The first of ``keys`` present, compared without case (label spellings vary)."""
    lowered = {k.lower(): v for k, v in labels.items()}
    for key in keys:
        if lowered.get(key):
            return lowered[key]
    return None


def metadata_from_inspect(path: Path, output: str) -> ImageMetadata:
    """Metadata from ``apptainer inspect --json`` output; the file name fills gaps."""
    doc = json.loads(output)
    labels = labels_from_inspect(doc)
    name, version = parse_file_name(path.name)
    apps = _app_list(_dig(doc, ("data", "attributes", "apps")) or _label(labels, ("apps",)))
    return ImageMetadata(
        name=_label(labels, _LABEL_NAME) or name,
        version=_label(labels, _LABEL_VERSION) or version,
        description=_label(labels, _LABEL_DESCRIPTION),
        labels=labels,
        gpu=_truthy(_label(labels, ("gpu",))),
        apps=apps,
        source="inspect",
    )


def inspect_env() -> dict[str, str]:
    """The environment for ``apptainer inspect``: see ``_INSPECT_ENV_KEYS``."""
    env = {k: os.environ[k] for k in _INSPECT_ENV_KEYS if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith(_INSPECT_ENV_PREFIXES)})
    env.setdefault("PATH", os.defpath)
    return env


def run_inspect(argv: Sequence[str], timeout: float) -> str:
    """Run ``argv`` (never through a shell) and return its output; raise if it fails."""
    done = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=inspect_env(),
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ValueError(f"exit {done.returncode}: {done.stderr.strip()[:500]}")
    return done.stdout


# --- the catalog -----------------------------------------------------------------------


class ApptainerCatalog:
    """The images of the configured directories, kept in memory between scans.

    One instance per process (``app.state.apptainer``). Reads are lock-free: a scan
    builds new dictionaries and swaps them in; scans themselves are serialised.
    """

    def __init__(
        self,
        image_dirs: Sequence[Path],
        command: str = "apptainer",
        *,
        inspect_timeout: float = 30.0,
        max_age_seconds: float = 60.0,
        runner: InspectRunner = run_inspect,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.image_dirs = [Path(d) for d in image_dirs]
        self.command = command
        self.inspect_timeout = inspect_timeout
        self.max_age_seconds = max_age_seconds
        self._runner = runner
        self._clock = clock
        self._lock = threading.Lock()
        self._images: dict[str, Image] = {}
        self._signatures: dict[str, _Signature] = {}
        self._cache: dict[Path, tuple[_Signature, ImageMetadata]] = {}
        self._scanned_at: datetime | None = None
        self._scanned_clock: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApptainerCatalog:
        return cls(settings.apptainer_image_dirs, settings.apptainer_command)

    @property
    def scanned_at(self) -> datetime | None:
        return self._scanned_at

    def needs_scan(self) -> bool:
        """True before the first scan and once the last one is ``max_age_seconds`` old."""
        last = self._scanned_clock
        return last is None or self._clock() - last >= self.max_age_seconds

    def images(self) -> list[Image]:
        """Every image, ordered by id; scans first if the catalog is due."""
        self._ensure_fresh()
        return [self._images[k] for k in sorted(self._images)]

    def get(self, image_id: str) -> Image | None:
        self._ensure_fresh()
        return self._images.get(image_id)

    def _ensure_fresh(self) -> None:
        if self.needs_scan():
            self.refresh()

    def refresh(self) -> None:
        """Scan if due; requests that queued behind another's scan do not scan again."""
        with self._lock:
            if self.needs_scan():
                self._scan_locked()

    def inspect_available(self) -> bool:
        """Whether ``apptainer_command`` (a name on PATH or a path) can be run here."""
        return shutil.which(self.command) is not None

    def scan(self) -> ScanResult:
        """Walk the directories again; only new or changed images are inspected."""
        with self._lock:
            return self._scan_locked()

    def _scan_locked(self) -> ScanResult:
        problems: list[str] = []
        built = self._build(self._found(problems), self.inspect_available())
        result = self._compare(built.signatures, built.inspect_calls, problems)
        self._images, self._signatures, self._cache = built.images, built.signatures, built.cache
        self._scanned_at, self._scanned_clock = result.scanned_at, self._clock()
        for problem in problems:
            log.warning("Apptainer catalog: %s", problem)
        return result

    def _build(self, found_images: Iterable[_Found], inspect: bool) -> _Built:
        """The new catalog, reusing cached metadata wherever the signature is unchanged."""
        built = _Built()
        for found in found_images:
            signature = self._signature(found, inspect)
            cached = self._cache.get(found.path)
            if cached is not None and cached[0] == signature:
                metadata = cached[1]
            else:
                metadata, ran = self._metadata(found.path, inspect)
                built.inspect_calls += ran
            built.cache[found.path] = (signature, metadata)
            image = self._image(found, metadata, taken=built.images)
            built.images[image.id] = image
            built.signatures[image.id] = signature
        return built

    def _found(self, problems: list[str]) -> Iterable[_Found]:
        seen: set[Path] = set()
        for root in self.image_dirs:
            for found in _walk(root, problems):
                if found.path not in seen:  # the same directory configured twice
                    seen.add(found.path)
                    yield found

    @staticmethod
    def _signature(found: _Found, inspect: bool) -> _Signature:
        sidecar = None if inspect else _sidecar_signature(found.path)
        stat = found.stat
        return _Signature(found.path, stat.st_mtime_ns, stat.st_size, sidecar, inspect)

    def _metadata(self, path: Path, inspect: bool) -> tuple[ImageMetadata, int]:
        """The image's metadata and how many inspect commands that took (0 or 1)."""
        if not inspect:
            return metadata_from_file(path), 0
        argv = [self.command, "inspect", "--json", str(path)]
        try:
            return metadata_from_inspect(path, self._runner(argv, self.inspect_timeout)), 1
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            log.warning("apptainer inspect %s failed (%s); using file metadata", path, exc)
            return metadata_from_file(path), 1

    @staticmethod
    def _image(found: _Found, metadata: ImageMetadata, *, taken: Mapping[str, Image]) -> Image:
        ident = image_id(found.relative)
        if ident in taken:  # same relative path in two directories: keep both
            ident = f"{ident}-{_short_hash(str(found.path))}"
        return Image(
            id=ident,
            name=found.path.name,
            path=found.path,
            category=found.category,
            size_bytes=found.stat.st_size,
            modified=datetime.fromtimestamp(found.stat.st_mtime, UTC),
            metadata=metadata,
        )

    def _compare(
        self, signatures: Mapping[str, _Signature], calls: int, problems: list[str]
    ) -> ScanResult:
        old = self._signatures
        same = sum(1 for k, sig in signatures.items() if old.get(k) == sig)
        known = sum(1 for k in signatures if k in old)
        return ScanResult(
            added=len(signatures) - known,
            removed=sum(1 for k in old if k not in signatures),
            updated=known - same,
            unchanged=same,
            total=len(signatures),
            inspect_calls=calls,
            problems=problems,
            scanned_at=datetime.now(UTC),
        )


def filter_images(
    images: Iterable[Image], *, category: str | None = None, q: str | None = None
) -> list[Image]:
    """Images in ``category`` (exact) whose id, file name, name or description has ``q``."""
    needle = q.lower() if q else None
    return [
        image
        for image in images
        if (category is None or image.category == category)
        and (needle is None or needle in _haystack(image))
    ]


def _haystack(image: Image) -> str:
    meta = image.metadata
    return "\n".join((image.id, image.name, meta.name, meta.description or "")).lower()


def find_image(catalog: ApptainerCatalog, image_id: str) -> Image:
    """The catalog's image ``image_id``, for job submission; ``NotFound`` otherwise."""
    image = catalog.get(image_id)
    if image is None:
        raise NotFound(
            f"No Apptainer image with id {image_id!r}; GET /api/v1/apptainer/images lists them."
        )
    return image


# --- running a job inside an image -----------------------------------------------------


def wrap_script(
    image: Image,
    inner_script_path: str,
    *,
    gpu: bool,
    binds: Sequence[str],
    command: str,
) -> str:
    """The batch script body that runs the user's script file inside ``image``.

    The user's script is a separate file (written as the user by the submission code)
    and is passed to ``bash`` by path, never inlined: no line of it (``EOF``, anything)
    can end a heredoc or be read as part of this wrapper. Every word is shell-quoted.
    ``exec`` hands the job's signals straight to Apptainer. The host environment is
    passed into the container (Apptainer's default), so no ``--cleanenv``.
    """
    if not command.strip():
        raise InvalidInput("The Apptainer command is empty.")
    if not inner_script_path:
        raise InvalidInput("The path of the script to run inside the image is empty.")
    argv = [command, "exec"]
    if gpu:
        argv.append("--nv")
    for bind in binds:
        if not bind.strip():
            raise InvalidInput("An Apptainer --bind value is empty.")
        argv += ["--bind", bind]
    argv += [str(image.path), "bash", inner_script_path]
    return "exec " + shlex.join(argv) + "\n"
