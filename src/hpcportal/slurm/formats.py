"""Which Slurm release the portal talks to, and which JSON format it asks for.

Slurm's JSON changes shape between *data_parser* versions, not releases: 22.05
writes OpenAPI v0.0.38, 23.02 v0.0.39, and from 23.11 each release offers a few
versions (24.11: v0.0.40-42, 26.05: v0.0.42-45) and prints the one its site chose
(``DataParserParameters``) unless the command names one with ``--json=vX``. So:

- the release comes from ``scontrol version`` (text, the same in every release);
- 22.05 and 23.02 have one format each and no ``--json=vX``: the portal reads
  theirs;
- from 23.11 the portal asks ``scontrol --json=list`` what the release offers and
  names the newest format that it reads too, on every JSON command. A site's
  default cannot change shapes underneath the portal, and a newer Slurm keeps
  working for as long as it still offers a format the portal reads.

Every document's ``meta`` block (spelled three ways, see ``wire.Meta``) names its
format; ``parse`` decodes with that format's strict structs and checks that it is
the one asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from hpcportal.errors import SlurmUnsupported
from hpcportal.slurm import wire, wire_v0039, wire_v0040


@dataclass(frozen=True, slots=True)
class Family:
    """The strict decoders of one family of formats (their shapes are the same)."""

    name: str
    squeue: msgspec.json.Decoder[Any]
    nodes: msgspec.json.Decoder[Any]
    sacct: msgspec.json.Decoder[Any]


V0038 = Family("v0.0.38", wire.squeue_decoder, wire.nodes_decoder, wire.sacct_decoder)
V0039 = Family(
    "v0.0.39", wire_v0039.squeue_decoder, wire_v0039.nodes_decoder, wire_v0039.sacct_decoder
)
V0040 = Family(
    "v0.0.40", wire_v0040.squeue_decoder, wire_v0040.nodes_decoder, wire_v0040.sacct_decoder
)

#: Every format the portal reads, newest first, with the structs that read it.
FAMILIES: dict[str, Family] = {
    "v0.0.45": V0040,
    "v0.0.44": V0040,
    "v0.0.43": V0040,
    "v0.0.42": V0040,
    "v0.0.41": V0040,
    "v0.0.40": V0040,
    "v0.0.39": V0039,
    "v0.0.38": V0038,
}
SUPPORTED_FORMATS = tuple(FAMILIES)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_FORMAT = re.compile(r"v\d+\.\d+\.\d+")


@dataclass(frozen=True, slots=True, order=True)
class SlurmRelease:
    """A Slurm version, e.g. 24.11.5; compared as numbers."""

    major: int
    minor: int
    micro: int = 0

    @classmethod
    def parse(cls, text: str) -> SlurmRelease:
        """From ``scontrol version`` (``slurm 24.11.5``, ``slurm-wlm 24.11.5``) or a
        meta block's ``24.11.5``."""
        match = _VERSION.search(text)
        if match is None:
            raise SlurmUnsupported(f"Could not read a Slurm version from {text.strip()[:100]!r}.")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor:02d}.{self.micro}"

    @property
    def series(self) -> str:
        return f"{self.major}.{self.minor:02d}"


#: The oldest release whose JSON the portal reads.
OLDEST = SlurmRelease(22, 5)
#: From here a command can be told which format to print (``--json=vX``).
EXPLICIT_FROM = SlurmRelease(23, 11)
#: From here nodes come from ``scontrol --json show nodes`` (sinfo groups them).
SCONTROL_NODES_FROM = SlurmRelease(23, 2)


def implicit_format(release: SlurmRelease) -> str | None:
    """The one format of a release before 23.11; None from 23.11 (it offers several)."""
    if release < OLDEST:
        return None
    if release < SlurmRelease(23, 2):
        return "v0.0.38"
    if release < EXPLICIT_FROM:
        return "v0.0.39"
    return None


def offered_formats(text: str) -> list[str]:
    """Formats named by ``--json=list`` (``data_parser/v0.0.42`` lines), as printed."""
    return _FORMAT.findall(" ".join(ln for ln in text.splitlines() if "data_parser/" in ln))


def choose_format(release: SlurmRelease, offered: Iterable[str] = ()) -> str:
    """The format to ask ``release`` for: its only one before 23.11, else the newest
    that both it offers and the portal reads. Raises ``SlurmUnsupported`` otherwise."""
    readable = ", ".join(reversed(SUPPORTED_FORMATS))
    if release < OLDEST:
        raise SlurmUnsupported(
            f"Slurm {release} is older than the portal supports (22.05 and newer)."
        )
    only = implicit_format(release)
    if only is not None:
        return only
    offers = set(offered)
    for name in SUPPORTED_FORMATS:
        if name in offers and name not in ("v0.0.38", "v0.0.39"):
            return name
    listed = ", ".join(sorted(offers)) or "none"
    raise SlurmUnsupported(
        f"Slurm {release} offers the JSON formats {listed}; the portal reads {readable}. "
        "Upgrade the portal, or install a data_parser plugin it reads."
    )


def json_flag(release: SlurmRelease, data_format: str) -> str:
    """``--json`` before 23.11 (one format), ``--json=vX`` from then on."""
    return f"--json={data_format}" if release >= EXPLICIT_FROM else "--json"


def format_of_meta(meta: wire.Meta | None) -> str | None:
    """The format a document says it is in, from any of the three ``meta`` spellings."""
    if meta is None or meta.plugin is None:
        return None
    for field in (meta.plugin.data_parser, meta.plugin.type):
        found = _FORMAT.search(field or "")
        if found:
            return found.group(0)
    return None


def release_of_meta(meta: wire.Meta | None) -> str | None:
    slurm = meta and (meta.slurm or meta.slurm_old)
    if not slurm:
        return None
    v = slurm.version
    return slurm.release or f"{v.major}.{int(v.minor):02d}.{v.micro}"
