"""Timestamps from platforms: read strictly, and believed only when they are plausible.

A platform's clock, database or bug can say anything: a `last_used_at` of 1970, a start
before the workspace existed, a moment next week. One rule for every adapter decides
what is believed (`plausible`):

- not before `TRUSTED_SINCE` (2000-01-01: no workspace of these platforms is older);
- not before the workspace was created, where the platform says when (`created`),
  give or take `CREATION_SLACK` for timestamps rounded apart;
- not more than `CLOCK_SKEW` ahead of our `now` (a little ahead is a clock a bit fast,
  and is read as `now`).

What is not believed depends on the field. A fact that only ever leads to an action
when known (activity, a start time) becomes unknown: `believed` returns None and
keeps the reason, which the adapter puts in the snapshot's `facts["unbelieved"]`. A
field the snapshot cannot do without skips the workspace with the reason, as any
unreadable field does (`plausible` raises).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

CLOCK_SKEW = timedelta(minutes=5)  # timestamps this far ahead of us are still believed
TRUSTED_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
CREATION_SLACK = timedelta(seconds=1)  # a platform may round two timestamps apart


class Implausible(ValueError):
    """A timestamp that was read but cannot be true."""


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as aware UTC; None for null, empty or Go's zero time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    try:  # the common case, at 100k workspaces a poll: Python reads it as it is
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _parse_time_slowly(value)
    if moment.tzinfo is None:
        raise ValueError(f"expected a timestamp with a time zone, got {value!r}")
    return None if moment.year <= 1 else moment.astimezone(UTC)


def _parse_time_slowly(value: str) -> datetime | None:
    text = value.replace("Z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"expected a timestamp with a time zone, got {value!r}")
    if moment.year <= 1:
        return None
    return moment.astimezone(UTC)


def read_time(value: Any, field: str) -> datetime | None:
    """`parse_time`, naming the field when the value cannot be read."""
    try:
        return parse_time(value)
    except ValueError as e:
        raise ValueError(f"`{field}` is not a timestamp: {e}") from None


def plausible(
    moment: datetime | None, field: str, *, now: datetime, created: datetime | None = None
) -> datetime | None:
    """`moment`, no later than `now`, when it can be true; Implausible says why not."""
    if moment is None:
        return None
    if moment > now + CLOCK_SKEW:
        raise Implausible(f"`{field}` is in the future ({moment.isoformat()})")
    if moment < TRUSTED_SINCE:
        since = TRUSTED_SINCE.date().isoformat()
        raise Implausible(f"`{field}` is before {since} ({moment.isoformat()})")
    if created is not None and moment < created - CREATION_SLACK:
        raise Implausible(f"`{field}` is before the workspace was created ({moment.isoformat()})")
    return min(moment, now)


def believed(
    moment: datetime | None,
    field: str,
    *,
    now: datetime,
    unbelieved: MutableMapping[str, str],
    created: datetime | None = None,
) -> datetime | None:
    """`moment` when plausible; else None (unknown), with the reason kept in `unbelieved`."""
    try:
        return plausible(moment, field, now=now, created=created)
    except Implausible as e:
        unbelieved[field] = str(e)
        return None
