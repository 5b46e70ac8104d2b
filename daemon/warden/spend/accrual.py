"""Accrual: observed running time times the last known rate → ledger entries. Pure.

Each observation of a workspace moves its accrual point forward; the time since the
previous point is charged at the rate known then, split into days at midnight of
each time zone the ledger keeps: UTC for `warden spend`, and each budget's zone, so
that a budget's window sums whole local days and resets at local midnight exactly.
A gap longer than `max_gap` is still charged (never dropped) but marked estimated.
The point and the ledger are written together, so a restart never counts twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from warden.budget.windows import local_midnight
from warden.model import WorkspaceId

MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
LEDGER_ZONE = "UTC"  # the days `warden spend` reports
RATE_PLACES = Decimal("0.000001")  # spend_points.per_hour is NUMERIC(18, 6)


@dataclass(frozen=True, slots=True)
class Point:
    """Where accrual stands for one workspace: when, at which rate, and whether it ran."""

    at: datetime
    running: bool
    per_hour: Decimal | None


@dataclass(frozen=True, slots=True)
class Accrual:
    """One workspace's observation: what to add to its ledger and where its point moves."""

    ws: WorkspaceId
    owner: str
    point: Point
    entries: list[Entry]
    incomplete: bool  # it ran without a price: its spend is missing, not zero


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendRow:
    """One workspace's spend on one UTC day, as the ledger has it."""

    ws: WorkspaceId
    owner: str
    day: date
    amount: Decimal
    estimated: Decimal
    incomplete: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """Money to add to one local day (in `zone`) of one workspace's ledger."""

    day: date
    amount: Decimal
    estimated: bool
    zone: str = LEDGER_ZONE


def accrue(
    previous: Point | None,
    current: Point,
    *,
    max_gap: timedelta,
    zones: Sequence[str] = (LEDGER_ZONE,),
    seen_at: datetime | None = None,
) -> list[Entry]:
    """What the time from `previous` to `current` cost, by day in each of `zones`.

    Nothing unless it was running at `previous`. Estimated when it went unobserved for
    longer than `max_gap` before `current`: since `seen_at` (the last listing that
    showed it, when later than its point), else since `previous`.
    """
    if previous is None or not previous.running or previous.per_hour is None:
        return []
    if current.at <= previous.at:
        return []  # an observation out of order (a clock step back): charge nothing twice
    unobserved_since = max(previous.at, seen_at) if seen_at is not None else previous.at
    estimated = current.at - unobserved_since > max_gap
    rate = previous.per_hour
    return [
        Entry(day, rate * _microseconds(span) / MICROSECONDS_PER_HOUR, estimated, zone)
        for zone in zones
        for day, span in split_by_day(previous.at, current.at, zone)
    ]


def open_spans(point: Point, current: Point, zones: Sequence[str]) -> bool:
    """Whether accrual can wait: the workspace runs on at the same rate, on the same
    local day in every zone, so that what it costs from `point` on is the open span
    `rate * (now - point.at)`, which readers of the ledger add (`Store.spend_between`)."""
    same_rate = _as_kept(point.per_hour) == _as_kept(current.per_hour)
    if point.running != current.running or not same_rate:
        return False
    return all(
        point.at.astimezone(ZoneInfo(zone)).date() == current.at.astimezone(ZoneInfo(zone)).date()
        for zone in zones
    )


def span_cost(
    point: Point,
    seen: datetime | None,
    zone: str,
    first: date,
    last: date,
    *,
    until: datetime | None = None,
) -> Decimal:
    """What an open span (from `point`, at its rate, to `seen` or `until`, the earlier)
    cost on the local days `first` to `last` of `zone`."""
    if point.per_hour is None or seen is None:
        return Decimal(0)
    end = Point(min(until, seen) if until is not None else seen, True, point.per_hour)
    entries = accrue(point, end, max_gap=timedelta.max, zones=[zone])
    return sum((e.amount for e in entries if first <= e.day <= last), Decimal(0))


def _as_kept(rate: Decimal | None) -> Decimal | None:
    """A rate as the store keeps it (six decimals): a computed one compares equal."""
    return None if rate is None else rate.quantize(RATE_PLACES)


def _microseconds(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1))


def split_by_day(
    start: datetime, end: datetime, zone: str = LEDGER_ZONE
) -> list[tuple[date, timedelta]]:
    """The part of [start, end) that falls on each local day of `zone`."""
    tz = ZoneInfo(zone)
    parts = []
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while cursor < end:
        day = cursor.astimezone(tz).date()
        stop = min(local_midnight(day + timedelta(days=1), tz), end)
        parts.append((day, stop - cursor))
        cursor = stop
    return parts
