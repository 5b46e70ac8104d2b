"""The state store on PostgreSQL: what only a real server with several clients shows.

The behavioural tests in test_store.py run here too (their `database` fixture has a
PostgreSQL case); this module adds races between stores. Each test works in a fresh
schema, dropped afterwards. The server is required: when it is down these fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import POSTGRES_URL
from warden.model import Event
from warden.store import Store
from warden.store.lease import Fence, Fenced
from warden.store.migrate import head_revision

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@asynccontextmanager
async def fresh_schema(*, create: bool = True) -> AsyncIterator[str]:
    """A schema name no other test uses; dropped with everything in it afterwards."""
    name = f"warden_test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        if create:
            async with engine.connect() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield name
    finally:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await engine.dispose()


@asynccontextmanager
async def stores(schema: str, count: int) -> AsyncIterator[list[Store]]:
    """`count` stores on one schema, as separate replicas would have (own pools)."""
    opened = [await Store.open(POSTGRES_URL, schema=schema) for _ in range(count)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.aclose()


async def test_migrate_creates_the_schema_it_is_given() -> None:
    """A deployment names a schema; the first migration creates it."""
    async with fresh_schema(create=False) as schema, stores(schema, 1) as (store,):
        await store.migrate()
        assert await store.current_revision() == head_revision()


async def test_two_replicas_migrating_at_once_both_end_at_head() -> None:
    """The advisory lock makes the second wait, then find nothing left to do."""
    async with fresh_schema(create=False) as schema, stores(schema, 3) as replicas:
        await asyncio.gather(*(store.migrate() for store in replicas))
        revisions = {await store.current_revision() for store in replicas}
    assert revisions == {head_revision()}


async def test_replicas_racing_for_the_lease_exactly_one_wins() -> None:
    """Simultaneous attempts from separate pools: one holder, whoever it is."""
    async with fresh_schema() as schema, stores(schema, 4) as replicas:
        await replicas[0].migrate()
        won = await asyncio.gather(
            *(
                store.try_acquire_lease("leader", f"replica-{i}", NOW, TTL)
                for i, store in enumerate(replicas)
                for _ in range(3)  # each replica tries more than once at once
            )
        )
        granted = [grant is not None for grant in won]
        assert granted.count(True) == 3  # one replica, its three attempts (a renewal)
        assert {grant.epoch for grant in won if grant is not None} == {1}
        winner = granted.index(True) // 3
        others = [s for i, s in enumerate(replicas) if i != winner]
        assert not any(
            [await s.try_acquire_lease("leader", "late", NOW + TTL / 2, TTL) for s in others]
        )


async def test_a_lease_passes_to_a_standby_only_after_expiry() -> None:
    """The holder's silence ends its lease at `expires_at`, not before."""
    async with fresh_schema() as schema, stores(schema, 2) as (active, standby):
        await active.migrate()
        assert await active.try_acquire_lease("leader", "a", NOW, TTL)
        assert not await standby.try_acquire_lease(
            "leader", "b", NOW + TTL - timedelta(seconds=1), TTL
        )
        assert await standby.try_acquire_lease("leader", "b", NOW + TTL, TTL)
        assert not await active.try_acquire_lease("leader", "a", NOW + TTL, TTL)


async def test_concurrent_outbox_writers_commit_in_sequence_order() -> None:
    """Every event lands, and `seq` order is the order a cursor reader sees them in."""
    async with fresh_schema() as schema, stores(schema, 2) as (one, two):
        await one.migrate()
        batches = [
            [Event(id=f"e{i}-{j}", type="t", subject="s", time=NOW) for j in range(3)]
            for i in range(20)
        ]
        await asyncio.gather(
            *((one if i % 2 else two).add_events(batch) for i, batch in enumerate(batches))
        )
        stored = await one.events_after(0, limit=100)
    assert len(stored) == 60
    seqs = [e.seq for e in stored]
    assert seqs == sorted(seqs)
    by_batch = [e.id.split("-")[0] for e in stored]
    assert all(by_batch[k] == by_batch[k - k % 3] for k in range(60))  # batches stay whole


async def test_a_take_over_waits_for_the_fenced_write_under_way() -> None:
    """FOR SHARE on the lease row: the old holder's write either commits before the new
    epoch exists or is refused; it can never commit after the take-over."""
    async with fresh_schema() as schema, stores(schema, 2) as (old, new):
        await old.migrate()
        grant = await old.try_acquire_lease("leader", "a", NOW, TTL)
        assert grant is not None
        fenced = old.with_fence(Fence("leader", "a", grant.epoch))
        order: list[str] = []
        inside = asyncio.Event()
        finish = asyncio.Event()

        async def slow_write() -> None:
            async with fenced.write() as conn:
                await fenced.outbox(conn, [Event(id="e", type="t", subject="s", time=NOW)])
                inside.set()
                await finish.wait()
            order.append("write committed")

        async def take_over() -> None:
            await inside.wait()
            taken = await new.try_acquire_lease("leader", "b", NOW + TTL, TTL)
            order.append(f"taken at epoch {taken.epoch if taken else None}")

        writer = asyncio.create_task(slow_write())
        taker = asyncio.create_task(take_over())
        await inside.wait()
        await _until_a_backend_waits_for_a_lock(old)
        assert order == []  # the take-over is blocked behind the fenced write
        finish.set()
        await asyncio.gather(writer, taker)
        assert order == ["write committed", "taken at epoch 2"]
        with pytest.raises(Fenced):
            await fenced.add_events([Event(id="late", type="t", subject="s", time=NOW)])


async def _until_a_backend_waits_for_a_lock(store: Store, limit: float = 10.0) -> None:
    """Poll pg_stat_activity until some backend of this database waits on a lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(limit):
        while True:
            async with store.engine.connect() as conn:
                if (await conn.execute(query)).scalar_one():
                    return
            await asyncio.sleep(0.02)


async def test_a_writer_paused_inside_its_transaction_cannot_hold_up_the_take_over() -> None:
    """A replica stopped (SIGSTOP) inside a fenced write holds the lease row FOR SHARE:
    the server ends its idle session after `stalled_after`, so the take-over goes
    through, and the paused write never commits."""
    async with fresh_schema() as schema:
        old = await Store.open(POSTGRES_URL, schema=schema, stalled_after=timedelta(seconds=1))
        new = await Store.open(POSTGRES_URL, schema=schema)
        try:
            await old.migrate()
            grant = await old.try_acquire_lease("leader", "a", NOW, TTL)
            assert grant is not None
            fenced = old.with_fence(Fence("leader", "a", grant.epoch))
            inside, never = asyncio.Event(), asyncio.Event()

            async def paused_write() -> None:
                async with fenced.write() as conn:
                    await fenced.outbox(conn, [Event(id="paused", type="t", subject="s", time=NOW)])
                    inside.set()
                    await never.wait()  # the process stopped here: it sends nothing more

            writer = asyncio.create_task(paused_write())
            await inside.wait()
            async with asyncio.timeout(10):
                taken = await new.try_acquire_lease("leader", "b", NOW + TTL, TTL)
            assert taken is not None
            assert taken.epoch == grant.epoch + 1
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            assert [e.id for e in await new.events_after(0)] == []
        finally:
            await old.aclose()
            await new.aclose()


async def test_events_written_by_one_replica_wake_anothers_listener() -> None:
    """LISTEN/NOTIFY: a commit with events on one store reaches a listener on another."""
    async with fresh_schema() as schema, stores(schema, 2) as (writer_store, listener_store):
        await writer_store.migrate()
        heard = asyncio.Event()
        async with listener_store.listen(heard.set):
            await writer_store.add_events([Event(id="e", type="t", subject="s", time=NOW)])
            async with asyncio.timeout(5):
                await heard.wait()
