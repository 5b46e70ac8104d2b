"""Accrual: observed running time times the last known rate → ledger entries. Pure.

Each observation of a workspace moves its accrual point forward; the time since the
previous point is charged at the rate known then, split at UTC midnight into days.
A gap longer than `max_gap` is still charged (never dropped) but marked estimated.
The point and the ledger are written together, so a restart never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from warden.model import WorkspaceId

MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)


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
    """Money to add to one day of one workspace's ledger."""

    day: date
    amount: Decimal
    estimated: bool


def accrue(previous: Point | None, current: Point, *, max_gap: timedelta) -> list[Entry]:
    """What the time from `previous` to `current` cost: nothing unless it was running."""
    if previous is None or not previous.running or previous.per_hour is None:
        return []
    if current.at <= previous.at:
        return []  # an observation out of order (a clock step back): charge nothing twice
    estimated = current.at - previous.at > max_gap
    return [
        Entry(day, previous.per_hour * _microseconds(span) / MICROSECONDS_PER_HOUR, estimated)
        for day, span in split_by_day(previous.at, current.at)
    ]


def _microseconds(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1))


def split_by_day(start: datetime, end: datetime) -> list[tuple[date, timedelta]]:
    """The part of [start, end) that falls on each UTC day."""
    parts = []
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while cursor < end:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), UTC)
        stop = min(midnight, end)
        parts.append((cursor.date(), stop - cursor))
        cursor = stop
    return parts
