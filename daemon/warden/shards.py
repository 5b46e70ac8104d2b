"""Replicas share the work: each provider is a shard with a lease of its own.

A shard's lease (`shard:<provider>`) carries its own fencing epoch, exactly like the
coordinator's (`warden-leader`, which runs what is not a provider's: the dispatcher and
the spend feeds). A replica polls, decides and acts only for the shards it holds; its
cycle of any other provider is a standby's (it reads nothing).

Balance. Every replica keeps a presence lease (`replica:<id>`, one row per replica,
renewed with its shards). At each balance round (every third of the lease), it counts
the replicas alive, holds at most its fair share `ceil(shards / replicas)`, lets go of
any above it (after that shard's cycle under way has finished), and claims free shards
up to its share, `FOR UPDATE SKIP LOCKED` on PostgreSQL so that replicas claiming at
once take different ones. A dead replica's shards lapse with its leases and are claimed
at the next round: within one lease period and a third. With SQLite there is one
process, which holds every shard.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog

from warden.clock import Clock, monotonic, utc_now
from warden.leadership import Leadership
from warden.store import Store

log = structlog.get_logger(__name__)

SHARD = "shard:"
PRESENCE = "replica:"
PRESENCE_KEPT = timedelta(hours=1)  # a gone replica's presence row, forgotten after this

Release = Callable[[str, Leadership], Awaitable[None]]


def shard_lease(provider: str) -> str:
    return f"{SHARD}{provider}"


class Shards:
    """This replica's shards: a lease per provider, claimed and released to balance."""

    def __init__(
        self,
        store: Store,
        *,
        holder: str,
        ttl: timedelta,
        clock: Clock = utc_now,
        mono: Callable[[], float] = monotonic,
    ) -> None:
        self._store = store
        self.holder = holder
        self.ttl = ttl
        self._clock = clock
        self._mono = mono
        self._leases: dict[str, Leadership] = {}
        self._presence = Leadership(
            store, lease=f"{PRESENCE}{holder}", holder=holder, ttl=ttl, clock=clock, mono=mono
        )

    def lease(self, provider: str) -> Leadership:
        """The lease of `provider`'s shard as this replica sees it (held or not)."""
        found = self._leases.get(provider)
        if found is None:
            found = self._leases[provider] = Leadership(
                self._store,
                lease=shard_lease(provider),
                holder=self.holder,
                ttl=self.ttl,
                clock=self._clock,
                mono=self._mono,
            )
        return found

    def held(self) -> list[str]:
        """The providers whose shard this replica holds now."""
        return sorted(name for name, lease in self._leases.items() if lease.leading)

    async def balance(
        self, providers: Sequence[str], *, release: Release, now: datetime | None = None
    ) -> list[str]:
        """One round: renew what is held, let go of the excess, claim up to the fair
        share. `release(provider, lease)` lets a shard go once its cycle is done."""
        now = now or self._clock()
        await self._presence.renew(now)
        for name in self.held():
            if name in providers:
                await self.lease(name).renew(now)
        for name in [n for n in self.held() if n not in providers]:  # removed by a reload
            await release(name, self.lease(name))
        await self._store.prune_leases(PRESENCE, now - PRESENCE_KEPT)
        living = await self._store.live_holders(PRESENCE, now)
        alive = max(len(living), 1)
        await self._fence_out(providers, living, now)
        share = math.ceil(len(providers) / alive)
        mine = self.held()
        for name in mine[share:]:
            log.info("shard.released", provider=name, share=share, replicas=alive)
            await release(name, self.lease(name))
        room = share - len(self.held())
        free = [shard_lease(p) for p in providers if p not in self.held()]
        sent_at = self._mono()
        grants = await self._store.claim_leases(free, self.holder, now, self.ttl, limit=room)
        for grant in grants:
            provider = grant.name.removeprefix(SHARD)
            self.lease(provider).granted(grant, sent_at=sent_at)
            log.info("shard.acquired", provider=provider, epoch=grant.epoch, replicas=alive)
        return self.held()

    async def _fence_out(
        self, providers: Sequence[str], living: Sequence[str], now: datetime
    ) -> None:
        """End the sessions of replicas that let a shard lapse and are not alive: one
        paused mid-statement would hold the shard's row against the claim."""
        names = {shard_lease(p) for p in providers}
        gone = {
            g.holder
            for g in await self._store.leases()
            if g.name in names and g.expires_at <= now and g.holder not in ("", self.holder)
        } - set(living)
        if gone and (ended := await self._store.end_sessions_of(sorted(gone))):
            log.warning("shards.fenced_out", replicas=sorted(gone), sessions=ended)

    async def release_all(self) -> None:
        """At shutdown: every shard and the presence lapse now, for the others to take."""
        for name in self.held():
            await self.lease(name).release()
        await self._presence.release()
