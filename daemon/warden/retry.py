"""The one retry policy: how long to wait after a failure, for platforms and sinks alike,
and a circuit breaker per provider.

Nothing is retried in a tight loop. A failed platform action waits for a later cycle
(`warden.rails` holds it back until its next attempt time), a failed delivery for a
later round of the dispatcher; both take that time from `Backoff.delay`. The wait
doubles with each failure from `base` up to `cap`, with jitter upward only (so that a
herd spreads out, yet no attempt comes sooner than the doubling promises: after a time
T of failing, at most about log2(T / base) + 1 attempts were made), and never sooner
than a `Retry-After` the other side asked for.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with upward jitter, capped, honouring Retry-After."""

    base: timedelta = timedelta(seconds=30)  # the wait after the first failure
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2  # up to this share longer than the exponential step

    def delay(
        self, failures: int, retry_after: timedelta | None = None, rng: random.Random | None = None
    ) -> timedelta:
        """The wait after `failures` failures in a row (1-based)."""
        step: timedelta = min(self.cap, self.base * 2 ** min(max(failures, 1) - 1, 40))
        spread = (rng or random).uniform(1.0, 1.0 + self.jitter)
        wait = min(self.cap, step * spread)
        return max(wait, retry_after) if retry_after is not None else wait


ACTIONS = Backoff()  # a platform action that failed: 30 s, 1 min, 2 min, ... 1 h
DELIVERIES = Backoff(base=timedelta(seconds=5), cap=timedelta(minutes=30))  # a webhook


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
