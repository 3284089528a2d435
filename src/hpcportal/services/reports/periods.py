"""When a report schedule runs and which period each run covers, in the schedule's zone.

A schedule runs at ``time_of_day`` local time: every day (daily), on Mondays (weekly)
or on the first of the month (monthly), each time for the whole period just ended:
the day before, the ISO week before, the month before. Periods are local calendar
periods turned into UTC, so a week that holds a daylight-saving change is 167 or 169
hours long, as the people reading the report count it.

The period is derived from the *scheduled* instant, not from when the leader got to it:
a run delayed by a leader change still covers, and is keyed by, the same period, which
is what the unique (schedule, period key) row relies on. A local time that does not
exist on a spring-forward day runs at the same wall-clock offset as the hour before
(02:30 becomes 03:30); one that happens twice on a fall-back day runs the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from hpcportal.errors import InvalidInput

Frequency = Literal["daily", "weekly", "monthly"]
FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class SchedulePeriod:
    """One period a schedule reports on: its key (``2026-12-02``, ``2026-W48``,
    ``2026-11``) and its bounds in UTC, [start, end)."""

    key: str
    start: datetime
    end: datetime


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; 422 for anything else (no local file paths)."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidInput(f"Unknown time zone {name[:64]!r}.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"Unknown time zone {name[:64]!r}.") from None


def zone_names() -> list[str]:
    """Every IANA zone name this system knows, sorted (for the schedule form)."""
    return sorted(available_timezones())


def parse_time_of_day(text: str) -> time:
    """``HH:MM`` (24 hours); 422 otherwise."""
    try:
        hours, minutes = text.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError(text)
        return time(int(hours), int(minutes))
    except ValueError:
        raise InvalidInput(f"Time of day {text[:16]!r} is not HH:MM.") from None


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``tz`` as UTC (fold 0: see the module's note on DST)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _runs_on(frequency: Frequency, day: date) -> bool:
    if frequency == "daily":
        return True
    if frequency == "weekly":
        return day.isoweekday() == 1
    return day.day == 1


def next_run(frequency: Frequency, time_of_day: str, time_zone: str, after: datetime) -> datetime:
    """The first scheduled instant strictly after ``after`` (UTC)."""
    tz, at = zone(time_zone), parse_time_of_day(time_of_day)
    day = after.astimezone(tz).date()
    for offset in range(0, 40):  # a monthly run is at most 31 days away
        candidate = day + timedelta(days=offset)
        if _runs_on(frequency, candidate):
            instant = _local(candidate, at, tz)
            if instant > after:
                return instant
    raise AssertionError("no run within 40 days")  # unreachable: every month has a 1st


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return _local(day, time(0, 0), tz)


def period_of_run(frequency: Frequency, time_zone: str, scheduled: datetime) -> SchedulePeriod:
    """The period a run scheduled at ``scheduled`` (UTC) reports on: the local day,
    ISO week or month before the run's local date."""
    tz = zone(time_zone)
    day = scheduled.astimezone(tz).date()
    if frequency == "daily":
        first = day - timedelta(days=1)
        return SchedulePeriod(first.isoformat(), _midnight(first, tz), _midnight(day, tz))
    if frequency == "weekly":
        this_monday = day - timedelta(days=day.isoweekday() - 1)
        first = this_monday - timedelta(days=7)
        year, week, _ = first.isocalendar()
        key = f"{year}-W{week:02d}"
        return SchedulePeriod(key, _midnight(first, tz), _midnight(this_monday, tz))
    this_first = day.replace(day=1)
    first = (this_first - timedelta(days=1)).replace(day=1)
    key = f"{first.year}-{first.month:02d}"
    return SchedulePeriod(key, _midnight(first, tz), _midnight(this_first, tz))


#: The form's and the CLI's ready-made periods (besides custom dates).
PRESETS = ("yesterday", "last_week", "last_month", "this_month", "last_30_days", "last_year")


def preset(name: str, time_zone: str, now: datetime) -> SchedulePeriod:
    """A named period as of ``now`` in ``time_zone`` (calendar periods end at local
    midnight; ``this_month`` and ``last_30_days`` end now)."""
    tz = zone(time_zone)
    if name == "yesterday":
        return period_of_run("daily", time_zone, now)
    if name == "last_week":
        return period_of_run("weekly", time_zone, now)
    if name == "last_month":
        return period_of_run("monthly", time_zone, now)
    if name == "this_month":
        first = now.astimezone(tz).date().replace(day=1)
        return SchedulePeriod(f"{first.year}-{first.month:02d}", _midnight(first, tz), now)
    if name == "last_30_days":
        return SchedulePeriod("last-30-days", now - timedelta(days=30), now)
    if name == "last_year":
        this_year = now.astimezone(tz).date().replace(month=1, day=1)
        first = this_year.replace(year=this_year.year - 1)
        return SchedulePeriod(str(first.year), _midnight(first, tz), _midnight(this_year, tz))
    raise InvalidInput(f"Unknown period {name[:32]!r}; one of {', '.join(PRESETS)}.")
