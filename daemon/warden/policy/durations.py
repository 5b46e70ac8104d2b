"""Durations and percentages as admins write them: "2h", "1h30m", "90s", "5%"."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MAX_DURATION = timedelta(days=3650)  # ten years: longer is a mistake, and overflows dates
_MAX_DIGITS = len(str(int(MAX_DURATION.total_seconds())))  # more, in any unit, is too long


def described(value: Any) -> str:
    """An input for a message: text quoted (as repr, which the loader shows as written),
    anything else by its kind, never as Python writes it."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return "null" if value is None else "a value of another kind"


def parse_duration(value: Any) -> timedelta:
    """Read "2h", "1h30m", "45m", "90s", "1d" (and timedelta itself) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    match = _DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        raise ValueError(f'expected a duration such as "2h", got {described(value)}')
    too_long = f"expected a duration of at most {format_duration(MAX_DURATION)}, got {value!r}"
    if any(len(n) > _MAX_DIGITS for n in match.groups() if n):
        raise ValueError(too_long)  # before int(): thousands of digits are slow to read
    seconds = sum(
        int(n) * _UNIT_SECONDS[u] for n, u in zip(match.groups(), "dhms", strict=True) if n
    )
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for schemas, events and explain."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_percent(value: Any) -> Decimal:
    """Read "5%" or 5 into Decimal("5"); between 0 and 100."""
    wrong = f'expected a percentage such as "5%", got {described(value)}'
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(wrong)
    text = str(value).strip().removesuffix("%").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(wrong) from None
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(100):
        raise ValueError(f"expected a percentage between 0% and 100%, got {described(value)}")
    return number


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*(?=\d)(\d+d)?(\d+h)?(\d+m)?(\d+s)?\s*$",
            "examples": ["2h", "15m", "1h30m"],
        }
    ),
]

Percent = Annotated[
    Decimal,
    BeforeValidator(parse_percent),
    PlainSerializer(lambda d: f"{d}%", return_type=str),
    WithJsonSchema({"type": ["string", "number"], "examples": ["5%", 80]}),
]
