"""Office hours: parse `open` specs, and say when a schedule is open and where its edges are.

Pure functions: no clock reads, every instant is passed in. Windows are wall-clock
times in the schedule's own time zone, so 08:00 stays 08:00 across daylight-saving
changes; instants going in must be aware, instants coming out are aware UTC.

A window belongs to the day it starts on: "Fri 22:00-06:00" runs from Friday 22:00 to
Saturday 06:00. Public holidays (`holidays: DE`, `holidays: US-CA`) close the whole
local day, including the part of a window that crosses midnight into it. Windows that
touch or overlap merge, so "Mon 08:00-12:00" and "Mon 12:00-19:00" make no edge at 12:00.

This module must not import `warden.policy.models` at run time: the models call
`parse_window` to validate `open` specs as a file loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays as holidays_lib

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from warden.policy.models import Schedule

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HORIZON = timedelta(days=14)  # how far next_edge looks
_DAY_INDEX = {name.lower(): index for index, name in enumerate(DAYS)}
_SPEC = re.compile(r"(?P<days>\S+)\s+(?P<start>\S+)-(?P<end>\S+)")
_CLOCK = re.compile(r"(?P<hour>\d{2}):(?P<minute>\d{2})")
_MINUTES_PER_DAY = 24 * 60
# Days generated beyond a range on each side: more than the longest window (24h), so
# that merging chains of windows never invents an edge inside the range.
_MARGIN = 2


@dataclass(frozen=True, slots=True)
class Window:
    """One `open` spec: on these weekdays (0 = Monday), from `start` to `end` minutes.

    `end` may be 1440 (24:00); an `end` before `start` crosses midnight.
    """

    days: frozenset[int]
    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Edge:
    """A schedule opening or closing at `at` (aware UTC)."""

    at: datetime
    opening: bool


# ---------------------------------------------------------------- parsing


def parse_window(spec: str) -> Window:
    """Read "Mon-Fri 08:00-19:00", "Sat 10:00-14:00", "Mon,Wed,Fri 09:00-17:00".

    Raises ValueError with a message an admin can act on.
    """
    return _parse_window(spec.strip())


@lru_cache(maxsize=256)
def _parse_window(spec: str) -> Window:
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ValueError(f'expected days and hours such as "Mon-Fri 08:00-19:00", got {_q(spec)}')
    days = _parse_days(match["days"], spec)
    start = _parse_clock(match["start"], spec, end=False)
    end = _parse_clock(match["end"], spec, end=True)
    if start == end:
        raise ValueError(f"the window opens and closes at the same time in {_q(spec)}")
    return Window(days=days, start=start, end=end)


def _parse_days(text: str, spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        begin = _day(first, spec)
        finish = _day(last, spec) if last else begin
        # "Fri-Mon" wraps through the weekend
        days.update((begin + offset) % 7 for offset in range((finish - begin) % 7 + 1))
    return frozenset(days)


def _day(name: str, spec: str) -> int:
    try:
        return _DAY_INDEX[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown day {_q(name)} in {_q(spec)} (expected {', '.join(DAYS)}; ranges like Mon-Fri)"
        ) from None


def _parse_clock(text: str, spec: str, *, end: bool) -> int:
    match = _CLOCK.fullmatch(text)
    hour = int(match["hour"]) if match else -1
    minute = int(match["minute"]) if match else -1
    if match and (hour, minute) == (24, 0) and end:
        return _MINUTES_PER_DAY
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        latest = "24:00" if end else "23:59"
        raise ValueError(
            f"expected a time between 00:00 and {latest} such as 08:00, got {_q(text)} in {_q(spec)}"
        )
    return hour * 60 + minute


def parse_holidays(code: str) -> tuple[str, str | None]:
    """Split and check a holiday calendar code: "DE" → ("DE", None), "US-CA" → ("US", "CA")."""
    country, _, subdivision = code.strip().partition("-")
    try:
        calendar = holidays_lib.country_holidays(country)
    except NotImplementedError:
        raise ValueError(
            "expected a country code such as DE, or country-subdivision such as DE-BY, "
            f"got {_q(code)}"
        ) from None
    if not subdivision:
        return country, None
    if subdivision not in calendar.subdivisions:
        known = ", ".join(calendar.subdivisions) or "none"
        raise ValueError(
            f"{country} has no subdivision {_q(subdivision)} (expected one of: {known})"
        )
    return country, subdivision


# ---------------------------------------------------------------- questions


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether `schedule` is open at `at`: an opening instant is open, a closing one is not."""
    _require_aware(at)
    at = at.astimezone(UTC)
    return any(start <= at < end for start, end in _open_intervals(schedule, at, at))


def edges_between(schedule: Schedule, since: datetime, until: datetime) -> list[Edge]:
    """Every opening and closing in (since, until], in order."""
    _require_aware(since)
    _require_aware(until)
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if until <= since:
        return []
    edges: list[Edge] = []
    for start, end in _open_intervals(schedule, since, until):
        edges.extend(
            edge for edge in (Edge(start, True), Edge(end, False)) if since < edge.at <= until
        )
    return edges


def next_edge(schedule: Schedule, after: datetime) -> Edge | None:
    """The first opening or closing after `after`, if there is one within 14 days."""
    _require_aware(after)
    # Most schedules have an edge within a day or two: look there first.
    for horizon in (timedelta(days=2), HORIZON):
        edges = edges_between(schedule, after, after + horizon)
        if edges:
            return edges[0]
    return None


# ---------------------------------------------------------------- interval arithmetic

Interval = tuple[datetime, datetime]  # [start, end) in aware UTC


def _open_intervals(schedule: Schedule, since: datetime, until: datetime) -> Sequence[Interval]:
    """Merged open intervals covering [since, until], with margin days on both sides."""
    zone = ZoneInfo(schedule.timezone)
    first = since.astimezone(zone).date() - timedelta(days=_MARGIN)
    last = until.astimezone(zone).date() + timedelta(days=_MARGIN)
    return _intervals(schedule.timezone, tuple(schedule.open), schedule.holidays, first, last)


# Every workspace under a schedule policy asks about the same few days each cycle.
@lru_cache(maxsize=1024)
def _intervals(
    timezone: str, specs: tuple[str, ...], holidays: str | None, first: date, last: date
) -> tuple[Interval, ...]:
    zone = ZoneInfo(timezone)
    windows = _windows(specs)
    intervals: list[Interval] = []
    day = first
    while day <= last:
        intervals.extend(_day_intervals(windows, day, zone))
        day += timedelta(days=1)
    closed = [_local_day(holiday, zone) for holiday in _holidays(holidays, first, last)]
    return tuple(_merge(_subtract(sorted(intervals), closed)))


@lru_cache(maxsize=256)
def _windows(specs: tuple[str, ...]) -> tuple[Window, ...]:
    return tuple(parse_window(spec) for spec in specs)


def _day_intervals(windows: Iterable[Window], day: date, zone: ZoneInfo) -> Iterable[Interval]:
    for window in windows:
        if day.weekday() not in window.days:
            continue
        start = _instant(day, window.start, zone)
        end = _instant(
            day + timedelta(days=1) if window.crosses_midnight else day, window.end, zone
        )
        if start < end:  # a window inside a daylight-saving gap is empty
            yield start, end


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """A local wall time as aware UTC; a time in a gap moves forward, an ambiguous one is the first."""
    if minutes == _MINUTES_PER_DAY:
        day, minutes = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


def _local_day(day: date, zone: ZoneInfo) -> Interval:
    return _instant(day, 0, zone), _instant(day, _MINUTES_PER_DAY, zone)


def _holidays(code: str | None, first: date, last: date) -> list[date]:
    if code is None:
        return []
    found: list[date] = []
    for year in range(first.year, last.year + 1):
        found.extend(d for d in _holiday_dates(code, year) if first <= d <= last)
    return sorted(found)


@lru_cache(maxsize=64)
def _holiday_dates(code: str, year: int) -> frozenset[date]:
    country, subdivision = parse_holidays(code)
    return frozenset(holidays_lib.country_holidays(country, subdiv=subdivision, years=year))


def _subtract(intervals: Sequence[Interval], closed: Sequence[Interval]) -> list[Interval]:
    """`intervals` without the parts that fall into `closed`."""
    result: list[Interval] = []
    for start, end in intervals:
        pieces = [(start, end)]
        for c_start, c_end in closed:
            pieces = [
                piece
                for p_start, p_end in pieces
                for piece in ((p_start, min(p_end, c_start)), (max(p_start, c_end), p_end))
                if piece[0] < piece[1]
            ]
        result.extend(pieces)
    return result


def _merge(intervals: Sequence[Interval]) -> list[Interval]:
    """Sorted intervals with the ones that touch or overlap joined."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _q(text: str) -> str:
    """Quote a value for a message as a policy file would: "Mon-Fri 08:00-19:00"."""
    return json.dumps(text, ensure_ascii=False)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {at.isoformat()}")
