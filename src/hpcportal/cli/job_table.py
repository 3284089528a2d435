"""The job list as ``hpcportal jobs list`` prints it: squeue's columns and its TIME."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout"})
PENDING_STATUSES = frozenset({"queued", "queued_held"})
NAME_WIDTH = 24


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """Like squeue's TIME: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def job_time(job: Mapping[str, Any], now: datetime) -> str:
    """Run time so far (or in all, for a finished job); ``0:00`` while queued."""
    start = _parse_time(job.get("start_time"))
    if job.get("status") in PENDING_STATUSES or start is None or start > now:
        return "0:00"
    end = _parse_time(job.get("end_time"))
    finished = job.get("status") in FINISHED_STATUSES
    until = end if finished and end is not None and end >= start else now
    return format_duration((until - start).total_seconds())


def nodes_or_reason(job: Mapping[str, Any]) -> str:
    if job.get("status") in PENDING_STATUSES:
        return f"({job.get('reason') or 'None'})"
    return str(job.get("nodes") or "")


def job_rows(jobs: Sequence[Mapping[str, Any]], now: datetime) -> list[list[str]]:
    rows = []
    for job in jobs:
        name = str(job.get("name") or "")
        if len(name) > NAME_WIDTH:
            name = name[: NAME_WIDTH - 1] + "…"
        rows.append(
            [
                str(job.get("id", job.get("job_id", ""))),
                name,
                str(job.get("user") or ""),
                str(job.get("partition") or ""),
                str(job.get("state") or ""),
                job_time(job, now),
                nodes_or_reason(job),
            ]
        )
    return rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = []
    for cells in [list(header), *rows]:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
