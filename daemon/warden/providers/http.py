"""What an HTTP answer's headers say that more than the platform client reads: Retry-After.

The rest of the HTTP plumbing (status mapping, JSON reading, redirects, holds) lives
in `providers.client`, once for every adapter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

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
