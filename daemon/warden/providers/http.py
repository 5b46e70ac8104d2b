"""What every adapter shares about HTTP: status mapping, JSON reading, Retry-After.

Mapping a platform's answer to Warden's errors happens here once, so that each
adapter only says what it was trying to do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from warden.errors import (
    BadAnswer,
    Conflict,
    ProviderRejected,
    ProviderUnavailable,
    Unauthorized,
    WorkspaceGone,
    excerpt,
)

MAX_RETRY_AFTER = timedelta(minutes=10)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """Read a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(timedelta(seconds=int(value)), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if now is None or moment.tzinfo is None:
        return None
    return min(max(moment.astimezone(UTC) - now, timedelta(0)), MAX_RETRY_AFTER)


async def raise_for_status(
    resp: aiohttp.ClientResponse, provider: str, what: str, *, missing: str | None = None
) -> None:
    """Turn a non-2xx answer into the matching Warden error, with a short excerpt of the body."""
    if resp.status < 400:
        return
    body = excerpt(await resp.text(errors="replace"))
    message = f"{what}: HTTP {resp.status}: {body}"
    status = resp.status
    if status in (401, 403):
        raise Unauthorized(provider, message, status=status, missing=missing)
    if status in (404, 410):
        raise WorkspaceGone(provider, message, status=status)
    if status == 409:
        raise Conflict(provider, message, status=status)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise ProviderUnavailable(provider, message, status=status, retry_after=retry_after)
    raise ProviderRejected(provider, message, status=status)


async def read_json(
    resp: aiohttp.ClientResponse, provider: str, what: str, *, exact_numbers: bool = False
) -> Any:
    """The JSON body, or BadAnswer when it is truncated, not JSON, or not UTF-8.

    NaN and Infinity are refused; `exact_numbers` reads fractions as Decimal (money).
    """
    try:
        raw = await resp.read()
        return json.loads(
            raw, parse_float=Decimal if exact_numbers else float, parse_constant=_no_constant
        )
    except (ValueError, UnicodeDecodeError) as e:
        raise BadAnswer(provider, f"{what}: malformed JSON: {e}") from e
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as e:
        raise ProviderUnavailable(provider, f"{what}: answer cut short: {e!r}") from e


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def transport_error(provider: str, what: str, error: BaseException) -> ProviderUnavailable:
    """A connection failure or timeout, as the transient error it is."""
    return ProviderUnavailable(provider, f"{what}: {type(error).__name__}: {error}")


TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as aware UTC; None for null, empty or Go's zero time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    text = value.replace("Z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"expected a timestamp with a time zone, got {value!r}")
    if moment.year <= 1:
        return None
    return moment.astimezone(UTC)
