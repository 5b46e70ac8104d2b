"""Budget windows in local time: a day, an ISO week or a calendar month. Pure.

A window starts at local midnight, found for the date in the budget's time zone, so
a day in which the clocks change is 23 or 25 hours long, as the people living in it
count it. A midnight that does not exist (a zone whose clocks jump at 00:00) is the
moment of the jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

WindowKind = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in aware UTC, and the local dates it spans (first, last inclusive)."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date

    def remaining(self, now: datetime) -> timedelta:
        return max(self.end - now, timedelta(0))

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def window_at(kind: WindowKind, zone: str, now: datetime) -> Window:
    """The window of `kind` in `zone` that contains `now`."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    first = first_day_of(kind, today)
    following = next_first_day(kind, first)
    return Window(
        start=local_midnight(first, tz),
        end=local_midnight(following, tz),
        first_day=first,
        last_day=following - timedelta(days=1),
    )


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first moment of `day` in `tz`, as aware UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def first_day_of(kind: WindowKind, day: date) -> date:
    """The first day of the day, ISO week (Monday) or month that `day` is in."""
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_first_day(kind: WindowKind, first: date) -> date:
    """The first day of the period after the one that starts on `first`."""
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)
