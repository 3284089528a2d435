"""An image's metadata: from ``apptainer inspect --json`` (its labels, whatever the
Apptainer or Singularity release), else from its file name and an optional YAML
sidecar (portal hosts often have no Apptainer although the compute nodes do)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from hpcportal.services.apptainer_images import IMAGE_SUFFIX, ImageMetadata

log = logging.getLogger(__name__)

#: Sidecars are a few lines of YAML; anything larger is a mistake, not metadata.
SIDECAR_MAX_BYTES = 64 * 1024
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


def sidecar_signature(image: Path) -> tuple[str, int, int] | None:
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
