"""Which backups to keep: grandfather-father-son (daily, weekly, monthly).

The rule is restic's ``--keep-daily/--keep-weekly/--keep-monthly``, because operators
know it and it is stable when applied every day: for each of the last N days that
have a backup, keep that day's newest; likewise for the last M ISO weeks and the last
K calendar months (UTC); keep the union, and always the newest backup. A backup that
is the newest of a finished day, week or month stays the newest of it, so running the
rule after every backup keeps the same set as running it once at the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hpcportal.services.operations.backup import BackupInfo, list_backups


@dataclass(frozen=True)
class Policy:
    """How many of each to keep; at least one count must be above zero."""

    daily: int
    weekly: int
    monthly: int

    def __post_init__(self) -> None:
        if min(self.daily, self.weekly, self.monthly) < 0:
            raise ValueError("retention counts cannot be negative")
        if self.daily + self.weekly + self.monthly == 0:
            raise ValueError("retention keeps nothing: set at least one of daily, weekly, monthly")


@dataclass(frozen=True)
class Decision:
    keep: list[BackupInfo]
    delete: list[BackupInfo]


def _day(moment: datetime) -> Hashable:
    return moment.astimezone(UTC).date()


def _week(moment: datetime) -> Hashable:
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return (year, week)


def _month(moment: datetime) -> Hashable:
    utc = moment.astimezone(UTC)
    return (utc.year, utc.month)


def _newest_per_bucket(
    ordered: Sequence[tuple[datetime, int]], bucket: Callable[[datetime], Hashable], count: int
) -> set[int]:
    """Indexes of the newest item in each of the ``count`` newest buckets."""
    kept: set[int] = set()
    seen: set[Hashable] = set()
    for moment, index in ordered:  # newest first
        key = bucket(moment)
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.add(key)
        kept.add(index)
    return kept


def select(created: Sequence[datetime], policy: Policy) -> set[int]:
    """Indexes into ``created`` of the backups ``policy`` keeps."""
    ordered = sorted(((m, i) for i, m in enumerate(created)), reverse=True)
    if not ordered:
        return set()
    kept = {ordered[0][1]}
    kept |= _newest_per_bucket(ordered, _day, policy.daily)
    kept |= _newest_per_bucket(ordered, _week, policy.weekly)
    kept |= _newest_per_bucket(ordered, _month, policy.monthly)
    return kept


def decide(backups: Sequence[BackupInfo], policy: Policy) -> Decision:
    """Split finished backups into kept and deleted; unreadable ones are never deleted."""
    readable = [b for b in backups if b.manifest is not None]
    kept_indexes = select([b.manifest.created_at for b in readable if b.manifest], policy)
    keep = [b for i, b in enumerate(readable) if i in kept_indexes]
    delete = [b for i, b in enumerate(readable) if i not in kept_indexes]
    keep += [b for b in backups if b.manifest is None]
    return Decision(keep, delete)


def apply_retention(backup_dir: Path, policy: Policy, *, dry_run: bool = False) -> Decision:
    """Delete the backups ``policy`` does not keep (with ``dry_run``, only say which)."""
    decision = decide(list_backups(backup_dir), policy)
    if not dry_run:
        for backup in decision.delete:
            shutil.rmtree(backup.path)
    return decision
