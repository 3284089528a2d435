"""Job-size buckets: how many CPUs a job had, in the ranges reports group by.

Powers of four, as XDMoD's job-size groups: one CPU, a few cores, a node's worth, a
few nodes, many. The label is what the store keeps and reports print; ``BUCKETS`` is
their order, smallest first (tables sort by it, not alphabetically).
"""

from __future__ import annotations

#: (label, largest CPU count in it); the last has no bound.
_RANGES: tuple[tuple[str, int | None], ...] = (
    ("1", 1),
    ("2-4", 4),
    ("5-16", 16),
    ("17-64", 64),
    ("65-256", 256),
    ("257-1024", 1024),
    ("1025+", None),
)
BUCKETS: tuple[str, ...] = tuple(label for label, _ in _RANGES)


def size_bucket(cpus: int) -> str:
    """The bucket of a job with ``cpus`` CPUs (a job that never ran counts as 1)."""
    for label, top in _RANGES:
        if top is None or cpus <= top:
            return label
    raise AssertionError("the last bucket has no bound")


def bucket_order(label: str) -> int:
    """Where ``label`` sorts (unknown labels last)."""
    return BUCKETS.index(label) if label in BUCKETS else len(BUCKETS)
