"""Slurm host lists (``node[001-004]``, ``rack[1-2]-node[01-02]``) as plain names.

Expanded inside the Slurm boundary with ClusterShell's ``NodeSet``, which reads every
form Slurm writes (several bracket groups, suffixes after a bracket, zero padding), so
nothing above ``hpcportal.slurm`` parses host lists by hand.
"""

from __future__ import annotations

import re

from ClusterShell.NodeSet import NodeSet, NodeSetParseError

#: A bound on the names one list may spell: far above any real cluster, low enough
#: that a malformed ``node[1-99999999]`` cannot cost seconds and gigabytes.
MAX_NAMES = 100_000

_BRACKET = re.compile(r"\[([^\]]*)\]")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def expand(spec: str | None) -> list[str]:
    """Every node name in ``spec``, in Slurm's order; [] for none.

    A list that is malformed or spells more than ``MAX_NAMES`` names is kept as the
    one string it is rather than guessed at.
    """
    if spec is None or spec.strip().lower() in ("", "none", "(null)", "n/a"):
        return []
    spec = spec.strip()
    if not any(c in spec for c in "[],"):
        return [spec]  # one name: most running jobs
    if _upper_bound(spec) > MAX_NAMES:
        return [spec]
    names: list[str] = []
    for element in _top_level(spec):
        try:
            names.extend(str(name) for name in NodeSet(element))
        except NodeSetParseError:
            return [spec]
    return list(dict.fromkeys(names))


def _top_level(spec: str) -> list[str]:
    """Split on commas outside brackets, so Slurm's order of elements is kept
    (NodeSet sorts within what it is given)."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(spec):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    return [p.strip() for p in parts if p.strip()]


def _upper_bound(spec: str) -> int:
    """At most how many names ``spec`` spells: the product of its bracket sizes."""
    total = 1
    for group in _BRACKET.findall(spec):
        size = 0
        for part in group.split(","):
            match = _RANGE.match(part)
            if match is None:
                continue  # NodeSet will refuse it
            lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
            size += max(hi - lo + 1, 1)
        total *= max(size, 1)
        if total > MAX_NAMES:
            return total
    return total
