"""Real Slurm 22.05 output recorded from the dev cluster (tests/fixtures/slurm)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
