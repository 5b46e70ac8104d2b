"""Delivery state of the event outbox, per sink: cursors, deliveries, dead letters.

This module owns the tables of revision 0002 (`sink_states`, `deliveries`,
`snooze_tokens`) and every statement on them. It reads the outbox (`events`) and
writes the dispatcher's own events there in the same transaction as the delivery
state they report, as the store does for its state changes. It decides nothing:
routing, grouping, backoff and when to give up belong to `warden.events`.

A sink's life: `sink_state()` creates its cursor; `route()` moves the cursor over
the outbox and queues the events routing chose (one transaction, so a crash repeats
or completes it, never halves it); `due()` finds the deliveries to attempt now, one
per subject (order is kept per workspace); `mark_delivered()`, `record_failure()`
or `disable_sink()` record what an attempt gave. Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from warden.model import Event
from warden.store import tables as db
from warden.store.engine import upsert
from warden.store.rows import StoredEvent
from warden.store.store import Store

d = db.deliveries


class Status(StrEnum):
    """Where one event stands with one sink."""

    PENDING = "pending"  # to be attempted at next_attempt_at
    DELIVERED = "delivered"  # the receiver acknowledged it (2xx)
    DEAD = "dead"  # given up after the attempt limit: visible, replayable


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkState:
    """A sink's cursor over the outbox, and whether a 410 Gone switched it off."""

    sink: str
    last_seq: int
    disabled: bool
    disabled_at: datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued:
    """An event waiting for one sink."""

    seq: int
    event: Event
    attempts: int  # attempts made so far
    batch: str | None
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An event a sink gave up on, with why: what `warden events replay` sends again."""

    sink: str
    seq: int
    event_id: str
    type: str
    subject: str
    attempts: int
    last_error: str | None
    dead_at: datetime | None


# ---------------------------------------------------------------- connections


@asynccontextmanager
async def _read(store: Store) -> AsyncIterator[AsyncConnection]:
    async with store.engine.connect() as conn:
        yield conn


# ---------------------------------------------------------------- sinks


async def sink_state(store: Store, sink: str, *, start_after: datetime) -> SinkState:
    """The sink's state; a sink seen for the first time starts at the first event at or
    after `start_after`, so that adding a sink does not replay the whole history."""
    async with _read(store) as conn:
        row = (await conn.execute(select(db.sink_states).where(_sink(sink)))).first()
    if row is not None:
        return SinkState(**row._mapping)
    async with store.write() as conn:
        row = (await conn.execute(select(db.sink_states).where(_sink(sink)))).first()
        if row is None:
            before = select(func.max(db.events.c.seq)).where(db.events.c.time < start_after)
            last_seq = (await conn.execute(before)).scalar_one_or_none() or 0
            await conn.execute(
                db.sink_states.insert().values(sink=sink, last_seq=last_seq, disabled=False)
            )
            row = (await conn.execute(select(db.sink_states).where(_sink(sink)))).one()
    return SinkState(**row._mapping)


async def sink_states(store: Store) -> list[SinkState]:
    async with _read(store) as conn:
        rows = (await conn.execute(select(db.sink_states).order_by(db.sink_states.c.sink))).all()
    return [SinkState(**row._mapping) for row in rows]


async def disable_sink(
    store: Store,
    sink: str,
    *,
    reason: str,
    now: datetime,
    seqs: Sequence[int],
    events: Sequence[Event],
) -> None:
    """Switch `sink` off (its deliveries stay pending) and report it, in one transaction."""
    async with store.write() as conn:
        await conn.execute(
            update(db.sink_states)
            .where(_sink(sink))
            .values(disabled=True, disabled_at=now, reason=reason)
        )
        if seqs:
            await conn.execute(
                update(d)
                .where(d.c.sink == sink, d.c.seq.in_(seqs))
                .values(attempts=d.c.attempts + 1, last_attempt_at=now, last_error=reason)
            )
        await store.outbox(conn, events)


async def enable_sink(store: Store, sink: str) -> bool:
    """Switch a disabled sink on again; its cursor and pending deliveries carry on."""
    async with store.write() as conn:
        result = await conn.execute(
            update(db.sink_states)
            .where(_sink(sink), db.sink_states.c.disabled.is_(True))
            .values(disabled=False, disabled_at=None, reason=None)
        )
    return bool(result.rowcount)


# ---------------------------------------------------------------- routing


async def route(
    store: Store,
    sink: str,
    *,
    after_seq: int,
    through_seq: int,
    queued: Iterable[tuple[StoredEvent, datetime]],
) -> bool:
    """Queue `queued` (events and their first attempt times) and move the cursor from
    `after_seq` to `through_seq`; False, writing nothing, if the cursor had moved."""
    values = [
        {
            "sink": sink,
            "seq": stored.seq,
            "event_id": stored.id,
            "subject": stored.subject,
            "status": str(Status.PENDING),
            "attempts": 0,
            "next_attempt_at": first_attempt_at,
        }
        for stored, first_attempt_at in queued
    ]
    async with store.write() as conn:
        moved = await conn.execute(
            update(db.sink_states)
            .where(_sink(sink), db.sink_states.c.last_seq == after_seq)
            .values(last_seq=through_seq)
        )
        if moved.rowcount != 1:
            return False
        if values:
            insert = upsert(d, conn.dialect.name).on_conflict_do_nothing(
                index_elements=[d.c.sink, d.c.seq]
            )
            await conn.execute(insert, values)
    return True


# ---------------------------------------------------------------- delivery


def _heads(sink: str) -> Select[tuple[int]]:
    """The first pending delivery of each subject: only it may be attempted."""
    return (
        select(func.min(d.c.seq))
        .where(d.c.sink == sink, d.c.status == str(Status.PENDING))
        .group_by(d.c.subject)
    )


async def due(store: Store, sink: str, *, now: datetime, limit: int) -> list[Queued]:
    """Deliveries to attempt now: each subject's first pending one, if its time has come."""
    query = (
        select(db.events, d.c.attempts, d.c.batch, d.c.next_attempt_at)
        .select_from(d)
        .join(db.events, db.events.c.seq == d.c.seq)
        .where(
            d.c.sink == sink,
            d.c.status == str(Status.PENDING),
            d.c.next_attempt_at <= now,
            d.c.seq.in_(_heads(sink)),
        )
        .order_by(d.c.seq)
        .limit(limit)
    )
    async with _read(store) as conn:
        rows = (await conn.execute(query)).all()
    found = []
    for row in rows:
        fields = dict(row._mapping)
        attempts, batch, next_at = (
            fields.pop("attempts"),
            fields.pop("batch"),
            fields.pop("next_attempt_at"),
        )
        stored = StoredEvent(**fields)
        found.append(
            Queued(
                seq=stored.seq,
                event=stored.event(),
                attempts=attempts,
                batch=batch,
                next_attempt_at=next_at,
            )
        )
    return found


async def next_attempt_after(store: Store, sink: str, moment: datetime) -> datetime | None:
    """The earliest time after `moment` at which a subject's first delivery falls due."""
    query = select(func.min(d.c.next_attempt_at)).where(
        d.c.sink == sink,
        d.c.status == str(Status.PENDING),
        d.c.next_attempt_at > moment,
        d.c.seq.in_(_heads(sink)),
    )
    async with _read(store) as conn:
        found: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def unbatched_window(
    store: Store, sink: str, *, since: datetime
) -> tuple[datetime, datetime] | None:
    """The earliest and latest first-attempt times after `since` of deliveries not yet
    sent in a batch: how long a storm has been arriving."""
    query = select(func.min(d.c.next_attempt_at), func.max(d.c.next_attempt_at)).where(
        d.c.sink == sink,
        d.c.status == str(Status.PENDING),
        d.c.batch.is_(None),
        d.c.next_attempt_at > since,
    )
    async with _read(store) as conn:
        first, last = (await conn.execute(query)).one()
    return None if first is None else (first, last)


async def record_batch(store: Store, sink: str, seqs: Sequence[int], batch: str) -> None:
    """Remember which deliveries went out together, before the first attempt."""
    async with store.write() as conn:
        await conn.execute(update(d).where(d.c.sink == sink, d.c.seq.in_(seqs)).values(batch=batch))


async def mark_delivered(store: Store, sink: str, seqs: Sequence[int], *, now: datetime) -> None:
    async with store.write() as conn:
        await conn.execute(
            update(d)
            .where(d.c.sink == sink, d.c.seq.in_(seqs), d.c.status == str(Status.PENDING))
            .values(
                status=str(Status.DELIVERED),
                attempts=d.c.attempts + 1,
                last_attempt_at=now,
                delivered_at=now,
                last_error=None,
            )
        )


async def record_failure(
    store: Store,
    sink: str,
    *,
    now: datetime,
    error: str,
    retry: Sequence[int],
    retry_at: datetime,
    dead: Sequence[int],
    events: Sequence[Event],
) -> None:
    """A failed attempt: `retry` waits until `retry_at`, `dead` is given up on, and
    `events` (the dead-letter reports) are written in the same transaction."""
    failed = {"attempts": d.c.attempts + 1, "last_attempt_at": now, "last_error": error}
    async with store.write() as conn:
        if retry:
            await conn.execute(
                update(d)
                .where(d.c.sink == sink, d.c.seq.in_(retry))
                .values(next_attempt_at=retry_at, **failed)
            )
        if dead:
            await conn.execute(
                update(d)
                .where(d.c.sink == sink, d.c.seq.in_(dead))
                .values(status=str(Status.DEAD), dead_at=now, **failed)
            )
        await store.outbox(conn, events)


# ---------------------------------------------------------------- dead letters


async def dead_letters(
    store: Store, *, sink: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Dead-lettered deliveries, oldest first (optionally of one sink)."""
    query = (
        select(d, db.events.c.type)
        .join(db.events, db.events.c.seq == d.c.seq)
        .where(d.c.status == str(Status.DEAD))
        .order_by(d.c.seq, d.c.sink)
        .limit(limit)
    )
    if sink is not None:
        query = query.where(d.c.sink == sink)
    async with _read(store) as conn:
        rows = (await conn.execute(query)).all()
    return [
        DeadLetter(
            sink=row.sink,
            seq=row.seq,
            event_id=row.event_id,
            type=row.type,
            subject=row.subject,
            attempts=row.attempts,
            last_error=row.last_error,
            dead_at=row.dead_at,
        )
        for row in rows
    ]


async def replay(
    store: Store,
    *,
    now: datetime,
    sink: str | None = None,
    event_ids: Sequence[str] = (),
) -> int:
    """Queue dead letters again (all, one sink's, or the given events'); how many.

    They start afresh: attempts at zero, due at `now`, regrouped. A disabled sink
    stays disabled until `enable_sink()`.
    """
    conditions = [d.c.status == str(Status.DEAD)]
    if sink is not None:
        conditions.append(d.c.sink == sink)
    if event_ids:
        conditions.append(d.c.event_id.in_(list(event_ids)))
    async with store.write() as conn:
        result = await conn.execute(
            update(d)
            .where(and_(*conditions))
            .values(
                status=str(Status.PENDING),
                attempts=0,
                next_attempt_at=now,
                batch=None,
                dead_at=None,
            )
        )
    return result.rowcount


async def counts(store: Store) -> dict[str, dict[str, int]]:
    """Deliveries per sink and status, for metrics and the admin API."""
    query = select(d.c.sink, d.c.status, func.count().label("n")).group_by(d.c.sink, d.c.status)
    async with _read(store) as conn:
        rows = (await conn.execute(query)).all()
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found.setdefault(str(row.sink), {})[str(row.status)] = int(row.n)
    return found


async def statuses_of(store: Store, event_ids: Sequence[str]) -> dict[str, dict[str, Status]]:
    """Where each event stands with each sink it was routed to: {event id: {sink: status}}.

    An event not routed to any sink yet is absent.
    """
    found: dict[str, dict[str, Status]] = {}
    if not event_ids:
        return found
    query = select(d.c.event_id, d.c.sink, d.c.status).where(d.c.event_id.in_(list(event_ids)))
    async with _read(store) as conn:
        for row in await conn.execute(query):
            found.setdefault(row.event_id, {})[row.sink] = Status(row.status)
    return found


async def delivery_of(store: Store, sink: str, event_id: str) -> tuple[Status, int] | None:
    """Where one event stands with one sink: its status and the attempts made."""
    query = select(d.c.status, d.c.attempts).where(d.c.sink == sink, d.c.event_id == event_id)
    async with _read(store) as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else (Status(row.status), row.attempts)


# ---------------------------------------------------------------- snooze tokens


async def claim_snooze_token(
    store: Store, nonce: str, *, now: datetime, expires_at: datetime
) -> bool:
    """Mark a snooze link's nonce used; False if it was used already."""
    insert = upsert(db.snooze_tokens, store.engine.dialect.name).values(
        nonce=nonce, used_at=now, expires_at=expires_at
    )
    stmt = insert.on_conflict_do_nothing(index_elements=[db.snooze_tokens.c.nonce]).returning(
        db.snooze_tokens.c.nonce
    )
    async with store.write() as conn:
        return (await conn.execute(stmt)).first() is not None


async def release_snooze_token(store: Store, nonce: str) -> None:
    """Undo a claim whose snooze was refused, so that the link says why again."""
    async with store.write() as conn:
        await conn.execute(delete(db.snooze_tokens).where(db.snooze_tokens.c.nonce == nonce))


async def is_snooze_token_used(store: Store, nonce: str) -> bool:
    query = select(db.snooze_tokens.c.nonce).where(db.snooze_tokens.c.nonce == nonce)
    async with _read(store) as conn:
        return (await conn.execute(query)).first() is not None


async def prune_snooze_tokens(store: Store, *, before: datetime) -> int:
    """Forget used nonces of links that expired before `before` (they fail anyway)."""
    async with store.write() as conn:
        result = await conn.execute(
            delete(db.snooze_tokens).where(db.snooze_tokens.c.expires_at < before)
        )
    return result.rowcount


def _sink(sink: str) -> ColumnElement[bool]:
    return db.sink_states.c.sink == sink
