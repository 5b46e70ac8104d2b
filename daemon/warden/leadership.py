"""This replica's hold on a lease: the fence its writes carry, and when it must stop.

Two clocks guard an action, because each catches what the other cannot:
- the database's epoch (`store.lease.check`), checked inside the transaction of every
  action begun or finished, outbox claim and budget write: a replica that lost the
  lease (paused, cut off) writes nothing once another holds it;
- this process's monotonic clock, checked right before every platform mutation: the
  lease was granted until `t0 + ttl`, where `t0` is when the request to take it was
  sent, so by this clock the grant lapses no later than the database thinks it does.
  A replica that was paused past its lease finds its deadline gone on waking and does
  not send the mutation it was about to send, even before the database says so.

Replicas compare lease expiries in their own wall clocks, so those must agree within
`margin` (NTP does far better); the margin is taken off the local deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from warden.clock import Clock, monotonic, utc_now
from warden.errors import WardenError
from warden.store import Store
from warden.store.lease import Fence, Grant

log = structlog.get_logger(__name__)

Listener = Callable[[Fence | None], None]


class LeaseLapsed(WardenError):
    """By this replica's own clock its lease has run out: it must not act now."""


class Leadership:
    """Takes and renews one lease for this replica; knows its fence and its deadline."""

    def __init__(
        self,
        store: Store,
        *,
        lease: str,
        holder: str,
        ttl: timedelta,
        clock: Clock = utc_now,
        mono: Callable[[], float] = monotonic,
    ) -> None:
        self._store = store
        self.lease = lease
        self.holder = holder
        self.ttl = ttl
        self.margin = max(timedelta(seconds=1), ttl / 10)
        self._clock = clock
        self._mono = mono
        self._fence: Fence | None = None
        self._deadline = 0.0  # monotonic seconds after which the fence is not trusted
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call `listener(fence)` when this replica starts (a fence) or stops (None) leading."""
        self._listeners.append(listener)

    @property
    def fence(self) -> Fence | None:
        """The fence to write under, while the local deadline has not passed."""
        return self._fence if self._fence is not None and self._mono() < self._deadline else None

    @property
    def leading(self) -> bool:
        return self.fence is not None

    def remaining(self) -> float:
        """Seconds left on the local deadline (0 when not leading)."""
        return max(self._deadline - self._mono(), 0.0) if self._fence is not None else 0.0

    async def renew(self, now: datetime | None = None) -> Fence | None:
        """Take or keep the lease; the fence to act under, or None while another leads."""
        now = now or self._clock()
        sent_at = self._mono()
        grant = await self._store.try_acquire_lease(self.lease, self.holder, now, self.ttl)
        if grant is None:
            self._change(None, "lease.held_elsewhere")
            return None
        fence = Fence(self.lease, grant.holder, grant.epoch)
        self._deadline = sent_at + (self.ttl - self.margin).total_seconds()
        self._change(fence, "lease.acquired")
        return fence

    async def ensure(self, now: datetime | None = None, *, take: bool = True) -> Fence | None:
        """The fence, renewing first when less than a third of the lease is left. With
        `take` off (a shard, which only balancing claims), a lease not held stays so."""
        if self.fence is not None and self.remaining() > self.ttl.total_seconds() / 3:
            return self._fence
        if not take and self._fence is None:
            return None
        return await self.renew(now)

    def granted(self, grant: Grant, *, sent_at: float) -> Fence:
        """A lease claimed elsewhere (a balance round) is now this one's to act under."""
        fence = Fence(self.lease, grant.holder, grant.epoch)
        self._deadline = sent_at + (self.ttl - self.margin).total_seconds()
        self._change(fence, "lease.acquired")
        return fence

    def check(self) -> Fence:
        """Right before a platform mutation: the fence, or LeaseLapsed."""
        fence = self.fence
        if fence is None:
            raise LeaseLapsed(f"{self.holder}: the lease {self.lease} has lapsed by this clock")
        return fence

    def fenced(self, why: str) -> None:
        """A write was refused for an old epoch: stop leading at once."""
        log.error("lease.fenced", replica=self.holder, lease=self.lease, why=why)
        self._change(None, "lease.lost")

    async def release(self) -> None:
        """Give the lease up (at shutdown), so that a standby takes over at once."""
        if self._fence is not None:
            await self._store.release_lease(self.lease, self.holder)
        self._change(None, "lease.released")

    def _change(self, fence: Fence | None, what: str) -> None:
        before = self._fence
        self._fence = fence
        if fence is None:
            self._deadline = 0.0
        if (before is None) != (fence is None) or (before and fence and before != fence):
            log.info(what, replica=self.holder, lease=self.lease, epoch=fence and fence.epoch)
            for listener in self._listeners:
                listener(fence)
