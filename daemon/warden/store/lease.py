"""Leases with fencing: one replica acts on a piece of work, and a replica that lost
its lease cannot act on it any more, even if it does not know yet.

A lease is one row per name: its holder, when it lapses, and its epoch. Acquiring is
a single INSERT ... ON CONFLICT DO UPDATE whose WHERE lets the current holder renew
and anyone take a lapsed lease, so two replicas racing on PostgreSQL cannot both win
(the conflicting row is locked, and the loser's WHERE then sees the winner's fresh
expiry). The epoch goes up by one whenever the holder changes and never goes back
(a release lapses the row instead of deleting it), so it is a fencing token.

`check()` runs inside the transaction of every write that must come from the holder
(an action begun or finished, an outbox claim, a budget write): it locks the lease row
for share on PostgreSQL, so a take-over waits for that transaction to commit, and then
finds the new epoch; a writer holding an old epoch gets `Fenced` and writes nothing.
Time is passed in; this module never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from warden.store.engine import upsert
from warden.store.errors import StoreError
from warden.store.tables import leases

LAPSED = datetime(1970, 1, 1, tzinfo=UTC)  # a released lease's expiry: anyone may take it


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease held: by whom, under which epoch, until when (the database's view)."""

    name: str
    holder: str
    epoch: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write must prove: the lease it acts under, its holder and epoch."""

    lease: str
    holder: str
    epoch: int

    def __str__(self) -> str:
        return f"{self.lease}@{self.epoch} ({self.holder})"


class Fenced(StoreError):
    """The lease has moved on: another replica holds it (or a newer epoch of it)."""

    def __init__(self, fence: Fence, found: str) -> None:
        super().__init__(f"fenced: {fence} is no longer the lease holder ({found})")
        self.fence = fence


async def try_acquire(
    conn: AsyncConnection, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> Grant | None:
    """Take or renew the lease until `now + ttl`; None while another holds it."""
    if ttl <= timedelta(0):
        raise ValueError(f"a lease needs a positive ttl, not {ttl}")
    insert = upsert(leases, conn.dialect.name).values(
        name=name, holder=holder, expires_at=now + ttl, epoch=1
    )
    same_holder = leases.c.holder == insert.excluded.holder
    stmt = insert.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={
            "holder": insert.excluded.holder,
            "expires_at": insert.excluded.expires_at,
            "epoch": case((same_holder, leases.c.epoch), else_=leases.c.epoch + 1),
        },
        where=same_holder | (leases.c.expires_at <= now),
    ).returning(leases.c.holder, leases.c.epoch, leases.c.expires_at)
    row = (await conn.execute(stmt)).first()
    return None if row is None else Grant(name, row.holder, row.epoch, row.expires_at)


async def release(conn: AsyncConnection, *, name: str, holder: str) -> bool:
    """Let the lease lapse now if `holder` has it, so a standby need not wait for expiry.

    The row stays, with its epoch: the next holder's epoch must be higher still.
    """
    result = await conn.execute(
        update(leases)
        .where(leases.c.name == name, leases.c.holder == holder)
        .values(expires_at=LAPSED)
    )
    return result.rowcount > 0


async def check(conn: AsyncConnection, fence: Fence) -> None:
    """Raise `Fenced` unless `fence` still names the lease's holder and epoch.

    On PostgreSQL the row is locked FOR SHARE until this transaction ends: a take-over
    (an UPDATE of the row) waits for it, so the write this check guards either commits
    before the new holder's epoch exists or is refused.
    """
    query = select(leases.c.holder, leases.c.epoch).where(leases.c.name == fence.lease)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = (await conn.execute(query)).first()
    if row is None:
        raise Fenced(fence, "no such lease")
    if row.holder != fence.holder or row.epoch != fence.epoch:
        raise Fenced(fence, f"held by {row.holder} at epoch {row.epoch}")


async def holders(conn: AsyncConnection) -> list[Grant]:
    """Every lease as it stands, for the admin API and tests."""
    rows = (await conn.execute(select(leases).order_by(leases.c.name))).all()
    return [Grant(r.name, r.holder, r.epoch, r.expires_at) for r in rows]


async def claim_free(
    conn: AsyncConnection,
    *,
    names: list[str],
    holder: str,
    now: datetime,
    ttl: timedelta,
    limit: int,
) -> list[Grant]:
    """Take up to `limit` of the leases `names` that nobody holds (lapsed or never
    taken), each with its epoch raised: how a replica claims shards.

    Missing rows are created lapsed first. On PostgreSQL the free rows are picked
    `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different shards
    instead of queueing on the same rows; SQLite has one writer at a time anyway.
    """
    if limit <= 0 or not names:
        return []
    missing = upsert(leases, conn.dialect.name).on_conflict_do_nothing(
        index_elements=[leases.c.name]
    )
    await conn.execute(
        missing, [{"name": n, "holder": "", "expires_at": LAPSED, "epoch": 0} for n in names]
    )
    free = (
        select(leases.c.name)
        .where(leases.c.name.in_(names), leases.c.expires_at <= now)
        .order_by(leases.c.name)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        free = free.with_for_update(skip_locked=True)
    chosen = [row.name for row in await conn.execute(free)]
    if not chosen:
        return []
    taken = await conn.execute(
        update(leases)
        .where(leases.c.name.in_(chosen), leases.c.expires_at <= now)
        .values(holder=holder, expires_at=now + ttl, epoch=leases.c.epoch + 1)
        .returning(leases.c.name, leases.c.holder, leases.c.epoch, leases.c.expires_at)
    )
    return [Grant(r.name, r.holder, r.epoch, r.expires_at) for r in taken]


async def live_holders(conn: AsyncConnection, *, prefix: str, now: datetime) -> list[str]:
    """The holders of unexpired leases whose name starts with `prefix` (presence rows)."""
    query = select(leases.c.holder).where(
        leases.c.name.startswith(prefix, autoescape=True), leases.c.expires_at > now
    )
    return sorted({row.holder for row in await conn.execute(query)})


async def prune(conn: AsyncConnection, *, prefix: str, before: datetime) -> int:
    """Forget leases named `prefix…` that lapsed before `before` (presence rows of
    replicas long gone: every restart has a new id). Never a shard's or the
    coordinator's: their epochs must never fall back."""
    result = await conn.execute(
        delete(leases).where(
            leases.c.name.startswith(prefix, autoescape=True), leases.c.expires_at < before
        )
    )
    return result.rowcount
