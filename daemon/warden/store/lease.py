"""The leader lease: one replica acts, the others stand by.

A lease is one row per name. Acquiring is a single INSERT ... ON CONFLICT DO UPDATE
whose WHERE lets the current holder renew and anyone take an expired lease, so two
replicas racing on PostgreSQL cannot both win (the conflicting row is locked, and the
loser's WHERE then sees the winner's fresh expiry). On SQLite there is one process
and the same statement works. Time is passed in; this module never reads a clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from warden.store.engine import upsert
from warden.store.tables import leases


async def try_acquire(
    conn: AsyncConnection, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the lease until `now + ttl`; False while another holds it."""
    if ttl <= timedelta(0):
        raise ValueError(f"a lease needs a positive ttl, not {ttl}")
    insert = upsert(leases, conn.dialect.name).values(
        name=name, holder=holder, expires_at=now + ttl
    )
    stmt = insert.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=(leases.c.holder == insert.excluded.holder) | (leases.c.expires_at <= now),
    ).returning(leases.c.holder)
    return (await conn.execute(stmt)).first() is not None


async def release(conn: AsyncConnection, *, name: str, holder: str) -> bool:
    """Give the lease up if `holder` has it, so a standby need not wait for expiry."""
    result = await conn.execute(
        delete(leases).where(leases.c.name == name, leases.c.holder == holder)
    )
    return result.rowcount > 0
