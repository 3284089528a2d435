"""Strict decoding of Slurm's JSON by format family, and the check that a document is
the format the adapter asked for (its ``meta`` names it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hpcportal.slurm import formats, wire, wire_v0039, wire_v0040

WireJob = wire.WireJob | wire_v0039.WireJob | wire_v0040.WireJob
WireNode = wire.WireNode | wire_v0039.WireNode | wire_v0040.WireNode
WireAcctJob = wire.WireAcctJob | wire_v0039.WireAcctJob | wire_v0040.WireAcctJob


def decode(raw: bytes, data_format: str | None, pick: Callable[[formats.Family], Any]) -> Any:
    """Decode ``raw`` with the strict structs of ``data_format`` (``pick`` chooses the
    command's decoder of a family) and check that the output says it is that format.

    Without ``data_format`` the document's own ``meta`` names it. A document with no
    meta at all (none that a supported Slurm prints) must fit one family exactly.
    """
    if data_format is None:
        data_format = formats.format_of_meta(wire.envelope_decoder.decode(raw).meta)
        if data_format is None:
            return _fit_any_family(raw, pick)
    family = formats.FAMILIES.get(data_format)
    if family is None:
        readable = ", ".join(reversed(formats.SUPPORTED_FORMATS))
        raise msgspec.ValidationError(
            f"JSON format {data_format} is not one the portal reads ({readable})"
        )
    try:
        out = pick(family).decode(raw)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"{data_format}: {exc}") from exc
    said = formats.format_of_meta(out.meta)
    if said is not None and said != data_format:
        raise msgspec.ValidationError(f"asked for JSON format {data_format}, got {said}")
    return out


def _fit_any_family(raw: bytes, pick: Callable[[formats.Family], Any]) -> Any:
    failures: list[str] = []
    for family in (formats.V0040, formats.V0039, formats.V0038):
        try:
            return pick(family).decode(raw)
        except msgspec.ValidationError as exc:
            failures.append(f"as {family.name}: {exc}")
    tried = "; ".join(failures)
    raise msgspec.ValidationError(f"output without meta fits no known format; {tried}")


def pick_squeue(family: formats.Family) -> Any:
    return family.squeue


def pick_nodes(family: formats.Family) -> Any:
    return family.nodes


def pick_sacct(family: formats.Family) -> Any:
    return family.sacct
