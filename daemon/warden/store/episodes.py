"""Episodes: trouble that is told once while it lasts, and what Warden does meanwhile.

This module owns the tables of revision 0007 that remember an episode between cycles
(and across restarts): a failing action's backoff (`action_retries`), a safety rail
holding a policy (`rail_holds`), a platform answer refused (`answer_rejections`), and
a provider's outage (`cycles.unreachable_since`). Each write takes the events that
report the episode's start or end and commits them with it, through the store's
(fenced) `write()`. Nothing here decides: backoff times, limits and what counts as an
episode belong to `warden.rails` and `warden.cycle`. Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, select, update

from warden.model import Event, Verb, WorkspaceId
from warden.store import tables as db
from warden.store.engine import upsert
from warden.store.store import Store

RetryKey = tuple[WorkspaceId, str, Verb]  # workspace, policy, verb


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """A failing action in backoff: how often it failed and when it may go again."""

    key: RetryKey
    failures: int
    first_failed_at: datetime
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """A rail holding a policy's actions on a provider, until it no longer needs to."""

    provider: str
    policy: str
    since: datetime
    reason: str
    wanted: int
    allowed: int
    released_at: datetime | None = None
    released_by: str | None = None

    @property
    def released(self) -> bool:
        return self.released_at is not None


# ---------------------------------------------------------------- action retries


async def retries(store: Store, provider: str) -> dict[RetryKey, Retry]:
    """Every action of `provider` in backoff, by (workspace, policy, verb)."""
    t = db.action_retries
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t).where(t.c.provider == provider))).all()
    found = {}
    for r in rows:
        key = (WorkspaceId(r.provider, r.native_id), r.policy, Verb(r.verb))
        found[key] = Retry(
            key=key,
            failures=r.failures,
            first_failed_at=r.first_failed_at,
            next_attempt_at=r.next_attempt_at,
            last_error=r.last_error,
        )
    return found


async def save_retries(store: Store, changed: Iterable[Retry]) -> None:
    """Write each retry's state (a failure counted, the next attempt moved)."""
    values = [
        {
            "provider": r.key[0].provider,
            "native_id": r.key[0].native,
            "policy": r.key[1],
            "verb": str(r.key[2]),
            "failures": r.failures,
            "first_failed_at": r.first_failed_at,
            "next_attempt_at": r.next_attempt_at,
            "last_error": r.last_error,
        }
        for r in changed
    ]
    if not values:
        return
    t = db.action_retries
    insert = upsert(t, store.dialect)
    stmt = insert.on_conflict_do_update(
        index_elements=[t.c.provider, t.c.native_id, t.c.policy, t.c.verb],
        set_={k: insert.excluded[k] for k in ("failures", "next_attempt_at", "last_error")},
    )
    async with store.write() as conn:
        await conn.execute(stmt, values)


async def end_retries(store: Store, keys: Iterable[RetryKey]) -> None:
    """Forget the backoff of actions whose episode ended (done, or no longer wanted)."""
    params = [{"p": w.provider, "n": w.native, "pol": pol, "v": str(v)} for w, pol, v in keys]
    if not params:
        return
    t = db.action_retries
    stmt = delete(t).where(
        t.c.provider == bindparam("p"),
        t.c.native_id == bindparam("n"),
        t.c.policy == bindparam("pol"),
        t.c.verb == bindparam("v"),
    )
    async with store.write() as conn:
        await conn.execute(stmt, params)


# ---------------------------------------------------------------- rail holds


async def holds(store: Store, provider: str | None = None) -> list[Hold]:
    """The holds in force (of one provider, or all), oldest first."""
    t = db.rail_holds
    query = select(t).order_by(t.c.since, t.c.provider, t.c.policy)
    if provider is not None:
        query = query.where(t.c.provider == provider)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Hold(**row._mapping) for row in rows]


async def begin_holds(store: Store, begun: Sequence[Hold], events: Sequence[Event]) -> None:
    """Record holds that begin this cycle, with the events that tell them (once)."""
    if not begun:
        return
    t = db.rail_holds
    stmt = upsert(t, store.dialect).on_conflict_do_nothing(
        index_elements=[t.c.provider, t.c.policy]
    )
    rows = [
        {
            "provider": h.provider,
            "policy": h.policy,
            "since": h.since,
            "reason": h.reason,
            "wanted": h.wanted,
            "allowed": h.allowed,
        }
        for h in begun
    ]
    async with store.write() as conn:
        await conn.execute(stmt, rows)
        await store.outbox(conn, events)


async def end_holds(store: Store, provider: str, policies: Iterable[str]) -> None:
    """Forget holds whose policy no longer asks for more than its share."""
    names = sorted(set(policies))
    if not names:
        return
    t = db.rail_holds
    async with store.write() as conn:
        await conn.execute(delete(t).where(t.c.provider == provider, t.c.policy.in_(names)))


async def release_hold(
    store: Store, provider: str, policy: str, *, by: str, now: datetime, events: Sequence[Event]
) -> Hold | None:
    """An admin lets a held policy act; the hold's record (released) or None if none."""
    t = db.rail_holds
    stmt = (
        update(t)
        .where(t.c.provider == provider, t.c.policy == policy, t.c.released_at.is_(None))
        .values(released_at=now, released_by=by)
        .returning(*t.c)
    )
    async with store.write() as conn:
        row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        await store.outbox(conn, events)
    return Hold(**row._mapping)


# ---------------------------------------------------------------- refused answers


async def rejections(store: Store, provider: str) -> dict[str, str]:
    """The platform answers of `provider` refused and not yet read well again: subject → why."""
    t = db.answer_rejections
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t).where(t.c.provider == provider))).all()
    return {row.subject: row.reason for row in rows}


async def update_rejections(
    store: Store,
    provider: str,
    *,
    begun: Mapping[str, str],
    ended: Iterable[str],
    now: datetime,
    events: Sequence[Event],
) -> None:
    """Start the episodes in `begun` (subject → reason), end those in `ended`, and tell."""
    t = db.answer_rejections
    gone = sorted(set(ended))
    async with store.write() as conn:
        if begun:
            stmt = upsert(t, store.dialect).on_conflict_do_nothing(
                index_elements=[t.c.provider, t.c.subject]
            )
            rows = [
                {"provider": provider, "subject": s, "since": now, "reason": r}
                for s, r in begun.items()
            ]
            await conn.execute(stmt, rows)
        if gone:
            await conn.execute(
                delete(t).where(and_(t.c.provider == provider, t.c.subject.in_(gone)))
            )
        await store.outbox(conn, events)
