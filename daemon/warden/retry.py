"""Retrying transient platform failures, and a circuit breaker per provider.

Only `ProviderUnavailable` is retried: a refusal (4xx) will not change by asking again.
A `Retry-After` from the platform sets the next wait. Sleeping is injected so that
tests and the simulated demo do not wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import anyio

from warden.errors import ProviderUnavailable

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped, for a bounded number of attempts."""

    attempts: int = 3
    base: float = 0.5  # seconds before the second attempt (before jitter)
    cap: float = 30.0

    def wait(self, attempt: int, retry_after: timedelta | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after.total_seconds(), self.cap)
        return rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    sleep: Sleep = anyio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run `call`, retrying ProviderUnavailable up to `backoff.attempts` times in all."""
    rng = rng or random.Random()
    for attempt in range(1, backoff.attempts + 1):
        try:
            return await call()
        except ProviderUnavailable as e:
            if attempt == backoff.attempts:
                raise
            await sleep(backoff.wait(attempt, e.retry_after, rng))
    raise AssertionError("unreachable: the loop returns or raises")


class CircuitBreaker:
    """Stops calling a provider after repeated failures, then lets one attempt through.

    Closed: calls go through. After `threshold` consecutive failures it opens for
    `cooldown`; once that passes it is half-open: one success closes it again.
    """

    def __init__(self, *, threshold: int = 5, cooldown: timedelta = timedelta(minutes=2)) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: datetime | None = None

    def allows(self, now: datetime) -> bool:
        return self.opened_at is None or now - self.opened_at >= self.cooldown

    def is_open(self, now: datetime) -> bool:
        return not self.allows(now)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self, now: datetime) -> bool:
        """Count a failure; True when this one opened the circuit."""
        self.failures += 1
        if self.failures >= self.threshold and (self.opened_at is None or self.allows(now)):
            self.opened_at = now
            return True
        return False
