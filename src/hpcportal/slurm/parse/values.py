"""Small readers of Slurm values shared by every parser: NoVal numbers, times,
"None" words, TRES and gres strings, durations and array ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

from hpcportal.slurm import wire

_UNSET_WORDS = frozenset({"", "none", "n/a", "unlimited", "infinite", "(null)", "all"})
_EMPTY = frozenset({""})
T = TypeVar("T")

Number = int | wire.NoVal | None


def num(value: Number) -> int | None:
    """An integer from a plain or ``{"set","infinite","number"}`` value; None if unset."""
    if value is None:
        return None
    if isinstance(value, wire.NoVal):
        return value.number if value.set and not value.infinite else None
    return value


def timestamp(value: Number) -> datetime | None:
    seconds = num(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds and seconds > 0 else None


def text(value: str | None) -> str | None:
    """Slurm writes "None", "None assigned" (sacct's nodes of a job that never ran),
    "(null)" or "" for nothing; make that None."""
    nothing = ("", "none", "none assigned", "(null)", "n/a")
    if value is None or value.strip().lower() in nothing:
        return None
    return value


def first_state(value: str | list[str] | None) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def or_empty(value: str | None) -> str:
    return value or ""


def or_none(value: str | None) -> str | None:
    return value or None


def parse_tres(value: str | None) -> dict[str, str]:
    """``"cpu=2,mem=1000M,gres/gpu=1"`` -> ``{"cpu": "2", "mem": "1000M", "gres/gpu": "1"}``."""
    out: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, val = item.partition("=")
        if sep and key:
            out[key.strip()] = val.strip()
    return out


def memory_mb(value: str | None) -> int | None:
    """``"4000M"``, ``"4G"``, ``"1T"`` or ``"512"`` (MB) -> MB."""
    if not value:
        return None
    factors = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    unit = value[-1].upper()
    try:
        if unit in factors:
            return int(float(value[:-1]) * factors[unit])
        return int(float(value))
    except ValueError:
        return None


def gpus_in_tres(tres: dict[str, str]) -> int:
    """GPU count from a TRES dict, not double counting typed and untyped entries."""
    if "gres/gpu" in tres:
        return to_int(tres["gres/gpu"]) or 0
    return sum(to_int(v) or 0 for k, v in tres.items() if k.startswith("gres/gpu:"))


def gpus_in_gres(gres: str | None) -> int:
    """GPU count from a node's gres string: ``"gpu:2"``, ``"gpu:a100:4(S:0-1)"``."""
    total = 0
    for item in _split_gres(gres or ""):
        name, _, rest = item.partition(":")
        if name != "gpu":
            continue
        count = rest.split("(", 1)[0].rsplit(":", 1)[-1]
        total += to_int(count) or 0
    return total


def _split_gres(gres: str) -> list[str]:
    """Split on commas that are not inside parentheses (``gpu:2(IDX:0,1)``)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in gres:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def to_int(value: str | None) -> int | None:
    """An integer column; None for Slurm's words for nothing or unlimited, or garbage."""
    return _convert(value, int, _UNSET_WORDS)


def to_float(value: str | None) -> float | None:
    """A decimal column (``sshare``'s NormShares...); None when empty or not a number."""
    return _convert(value, float, _EMPTY)


def _convert(value: str | None, kind: Callable[[str], T], unset: frozenset[str]) -> T | None:
    if value is None or value.strip().lower() in unset:
        return None
    try:
        return kind(value)
    except ValueError:
        return None


def time_minutes(value: str | None) -> int | None:
    """Slurm durations (``"1-02:03:04"``, ``"30:00"``, ``"90"``) -> minutes; None if unlimited."""
    if value is None or value.strip().lower() in _UNSET_WORDS:
        return None
    days, _, clock = value.strip().rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts[:3]
        return int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0] + (1 if parts[1] else 0)
    hours, minutes, seconds = parts[:3]
    return hours * 60 + minutes + (1 if seconds else 0)


def split_list(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def bitmap_to_ranges(hex_bitmap: str) -> str:
    """sacct's array bitmap (``"0x3F"``) -> ``"0-5"``."""
    try:
        bits = int(hex_bitmap, 16)
    except ValueError:
        return hex_bitmap
    indices = [i for i in range(bits.bit_length()) if bits >> i & 1]
    return compress_ranges(indices)


def compress_ranges(indices: Iterable[int]) -> str:
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
