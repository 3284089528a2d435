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

import logging
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput, NotFound
from hpcportal.services.apptainer_images import (
    IMAGE_SUFFIX,
    FoundImage,
    Image,
    ImageMetadata,
    ScanResult,
    image_id,
    short_hash,
    walk_images,
)
from hpcportal.services.apptainer_metadata import (
    SIDECAR_MAX_BYTES,
    InspectRunner,
    labels_from_inspect,
    metadata_from_file,
    metadata_from_inspect,
    parse_file_name,
    read_sidecar,
    run_inspect,
    sidecar_path,
    sidecar_signature,
)

__all__ = [
    "IMAGE_SUFFIX",
    "SIDECAR_MAX_BYTES",
    "ApptainerCatalog",
    "Image",
    "ImageMetadata",
    "InspectRunner",
    "ScanResult",
    "filter_images",
    "find_image",
    "image_id",
    "labels_from_inspect",
    "metadata_from_file",
    "metadata_from_inspect",
    "parse_file_name",
    "read_sidecar",
    "run_inspect",
    "sidecar_path",
    "wrap_script",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Signature:
    """What must stay equal for cached metadata to be reused."""

    path: Path
    mtime_ns: int
    size: int
    sidecar: tuple[str, int, int] | None
    inspected: bool


@dataclass
class _Built:
    """A catalog being built by a scan, swapped in whole when it is complete."""

    images: dict[str, Image] = field(default_factory=dict)
    signatures: dict[str, _Signature] = field(default_factory=dict)
    cache: dict[Path, tuple[_Signature, ImageMetadata]] = field(default_factory=dict)
    inspect_calls: int = 0


# --- the catalog -----------------------------------------------------------------------


class ApptainerCatalog:
    """The images of the configured directories, kept in memory between scans.

    One instance per process (``AppServices.apptainer``). Reads are lock-free: a scan
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

    def _build(self, found_images: Iterable[FoundImage], inspect: bool) -> _Built:
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

    def _found(self, problems: list[str]) -> Iterable[FoundImage]:
        seen: set[Path] = set()
        for root in self.image_dirs:
            for found in walk_images(root, problems):
                if found.path not in seen:  # the same directory configured twice
                    seen.add(found.path)
                    yield found

    @staticmethod
    def _signature(found: FoundImage, inspect: bool) -> _Signature:
        sidecar = None if inspect else sidecar_signature(found.path)
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
    def _image(found: FoundImage, metadata: ImageMetadata, *, taken: Mapping[str, Image]) -> Image:
        ident = image_id(found.relative)
        if ident in taken:  # same relative path in two directories: keep both
            ident = f"{ident}-{short_hash(str(found.path))}"
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
