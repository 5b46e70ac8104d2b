"""Durations and percentages as admins write them: "2h", "1h30m", "90s", "5%"."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: Any) -> timedelta:
    """Read "2h", "1h30m", "45m", "90s", "1d" (and timedelta itself) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    match = _DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        raise ValueError(f'expected a duration such as "2h", got {value!r}')
    seconds = sum(
        int(n) * _UNIT_SECONDS[u] for n, u in zip(match.groups(), "dhms", strict=True) if n
    )
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
    text = str(value).strip()
    text = text.removesuffix("%").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f'expected a percentage such as "5%", got {value!r}') from None
    if not Decimal(0) <= number <= Decimal(100):
        raise ValueError(f"expected a percentage between 0% and 100%, got {value!r}")
    return number


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$",
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
