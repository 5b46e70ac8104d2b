"""The state store: what Warden remembers between polls, and the event outbox.

`Store` is the only code that reads or writes Warden's tables. Every method that
changes state takes the events that report the change and writes them in the same
transaction (the transactional outbox): both commit, or neither does. Time is always
passed in; the store never reads a clock. It must not decide anything: it records
what the decision core and the actuator concluded.

One code path serves SQLite (the default) and PostgreSQL; the dialects differ only in
engine setup (`engine.py`) and in two PostgreSQL advisory locks taken here: one so
that two processes never migrate at once, one so that outbox sequence numbers commit
in order (a reader following `seq` never skips an event that commits late).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from warden.budget.state import WindowState
from warden.errors import excerpt
from warden.model import (
    NOTHING,
    Decision,
    Event,
    Memory,
    State,
    Verb,
    Warning,
    Workspace,
    WorkspaceId,
    shared,
    shared_decimal,
)
from warden.spend.accrual import LEDGER_ZONE, Accrual, Point, SpendRow, span_cost
from warden.spend.feeds import SourceState, SpendRecord
from warden.spend.savings import Stop
from warden.store import lease, migrate
from warden.store import tables as db
from warden.store.codec import (
    action_of,
    decision_digest,
    decision_of,
    decision_values,
    event_values,
    memory_of,
    observed_values,
    snapshot_digest,
    snapshot_from_row,
    spend_record_of,
    spend_record_values,
    warning_of,
    window_state_of,
    window_state_values,
    workspace_id_of,
)
from warden.store.engine import async_url, create_engine, session_name, upsert, writer
from warden.store.errors import ActionNotPending, StoreUnavailable, UnknownWorkspace
from warden.store.lease import Fence, Grant
from warden.store.period import Period, next_period
from warden.store.rows import (
    RELEASES_KEY,
    ActionRecord,
    CycleState,
    Outcome,
    PlannedAction,
    RunningSpan,
    StoredDecision,
    StoredEvent,
    WorkspaceRow,
)
from warden.store.samples import read_samples, sample_rows, write_samples

# snapshot_from_row is re-exported: `warden explain` imports it from here.
__all__ = ["Store", "snapshot_from_row"]

# pg_advisory_xact_lock keys: "WARDEN" in ASCII, then a number per purpose.
MIGRATION_LOCK = 0x5741_5244_454E_0001
OUTBOX_LOCK = 0x5741_5244_454E_0002
OUTBOX_CHANNEL = "warden_outbox"  # NOTIFY channel: the outbox has new events

# What a poll refreshes on a known workspace; first_seen_at, snoozes and stops stay.
_OBSERVED = (
    "name",
    "owner",
    "last_state",
    "last_seen_at",
    "running_since",
    "started_at",
    "last_snapshot",
    "digest",
)
T = TypeVar("T")
WRITE_BATCH = 1000  # rows built and sent at a time, so that memory holds one batch
# What `Memory` needs of a workspace's row: never its snapshot, the bulk of the row.
_REMEMBERED = (
    "provider",
    "native_id",
    "first_seen_at",
    "running_since",
    "snoozed_until",
    "stopped_by",
    "stopped_at",
    "kept_alive_at",
    "kept_alive_until",
)


class Store:
    """Warden's memory on SQLite or PostgreSQL. Open with `Store.open(url)`.

    `with_fence(fence)` gives a view of the same store whose every write first checks,
    in its own transaction, that the fence's lease is still held at its epoch
    (`lease.check`): what a cycle or the dispatcher writes goes through such a view, so
    a replica that lost its lease writes nothing. Listeners added with
    `on_events_written` are called after each commit that wrote to the outbox.
    """

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._schema = schema
        self._dialect = engine.dialect.name
        self._fence: Fence | None = None
        self._listeners: list[Callable[[], None]] = []
        self._wrote_events: set[int] = set()  # connections whose transaction wrote events

    # ------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for the modules that own tables of their own (`deliveries.py`)."""
        return self._engine

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str | None = None,
        stalled_after: timedelta | None = None,
        replica: str | None = None,
    ) -> Store:
        """Connect to `url` (StoreUnavailable if it cannot be reached); no migration.

        `schema` (PostgreSQL only) keeps Warden's tables in that schema; `migrate()`
        creates it when missing. `stalled_after`: see `engine.create_engine`.
        """
        _check_sqlite_directory(url)
        engine = create_engine(url, schema=schema, stalled_after=stalled_after, replica=replica)
        store = cls(engine, schema=schema)
        try:
            async with store._engine.connect():
                pass
        except (SQLAlchemyError, OSError) as e:
            await store.aclose()
            raise StoreUnavailable(
                f"cannot open the {store._dialect} state store: {excerpt(str(e))}"
            ) from e
        return store

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already.

        On PostgreSQL a transaction-scoped advisory lock makes a second process wait,
        then find the work done. On SQLite, BEGIN IMMEDIATE does the same.
        """
        async with self._write() as conn:
            if self._dialect == "postgresql":
                await _advisory_lock(conn, MIGRATION_LOCK)
                if self._schema is not None:
                    quoted = conn.dialect.identifier_preparer.quote_schema(self._schema)
                    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
            await conn.run_sync(migrate.upgrade_to_head)

    async def current_revision(self) -> str | None:
        """The schema revision the database is at; None before the first migration."""
        async with self._read() as conn:
            return await conn.run_sync(migrate.current_revision)

    @asynccontextmanager
    async def listen(self, on_events: Callable[[], None]) -> AsyncIterator[None]:
        """While open, call `on_events` whenever any replica commits events to the outbox
        (PostgreSQL LISTEN on the channel `outbox()` notifies). SQLite has one process,
        whose own commits tell its listeners already: nothing to listen to there."""
        if self._dialect != "postgresql":
            yield
            return
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection

            def heard(*_args: Any) -> None:
                on_events()

            await driver.add_listener(OUTBOX_CHANNEL, heard)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await driver.remove_listener(OUTBOX_CHANNEL, heard)

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self._read() as conn:
                await conn.execute(select(1))
        except (SQLAlchemyError, OSError):
            return False
        return True

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def fence(self) -> Fence | None:
        """The fence every write of this view checks; None for the plain store."""
        return self._fence

    def with_fence(self, fence: Fence | None) -> Store:
        """This store, with every write checked against `fence` (None: unchecked)."""
        view = copy.copy(self)
        view._fence = fence
        return view

    def on_events_written(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that wrote to the outbox (any view)."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, fenced when this view has a fence; listeners told after
        a commit that wrote events. Modules with tables of their own write through it."""
        async with self._writer.begin() as conn:
            if self._fence is not None:
                await lease.check(conn, self._fence)
            try:
                yield conn
            except BaseException:
                self._wrote_events.discard(id(conn))
                raise
        if id(conn) in self._wrote_events:
            self._wrote_events.discard(id(conn))
            for listener in self._listeners:
                listener()

    _write = write

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    async def outbox(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        """Write `batch` to the outbox, inside the caller's `write()` transaction."""
        if not batch:
            return
        if self._dialect == "postgresql":
            # Sequence numbers are handed out at INSERT but seen at COMMIT: serialising
            # outbox writers makes them visible in order, so no reader skips one.
            await _advisory_lock(conn, OUTBOX_LOCK)
            # Delivered at commit to every replica listening: a dispatcher elsewhere wakes.
            await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
        await _in_batches(conn, db.events.insert(), batch, event_values)
        self._wrote_events.add(id(conn))

    _outbox = outbox

    # ------------------------------------------------------------ observations

    async def record_observation(
        self,
        provider: str,
        workspaces: Sequence[Workspace],
        now: datetime,
        events: Sequence[Event] = (),
        *,
        listing: bool = False,
    ) -> frozenset[str]:
        """Remember what a poll saw of `provider`: only what changed, in one transaction.
        The native ids of those the listing before this one showed, as its answer.

        A workspace is written when its facts (`snapshot_digest`) or its running period
        changed, or when a `listing` (the poll's, not a re-read of a few) shows it again:
        an unchanged, listed one costs nothing, since the listing's own time (the
        cycle marker) says when it was seen. What a listing no longer shows is written
        once, unlisted, seen last at the listing before.

        A new running period (see `next_period`) forgets the extensions used and
        Warden's stop: once a workspace runs again, a later stop is not Warden's to
        undo unless Warden makes it.
        """
        async with self._write() as conn:
            # A due cycle's few workspaces need their own rows, not the whole fleet's.
            few = None if listing or len(workspaces) > 500 else [ws.id.native for ws in workspaces]
            known = await _known(conn, provider, few)
            listed_before = frozenset(native for native, k in known.items() if k.listed)
            changed: list[tuple[Workspace, Period, str]] = []  # rows built as they are sent
            renewed = []
            for ws in workspaces:
                if ws.id.provider != provider:
                    raise ValueError(f"{ws.id} is not a workspace of {provider!r}")
                before = known.pop(ws.id.native, None)
                period, is_new = next_period(before.period if before else None, ws, now)
                digest = snapshot_digest(ws)
                if before is None or before.differs(period, digest, listed=listing):
                    changed.append((ws, period, digest))
                if is_new and before is not None:  # a first sighting has nothing to forget
                    renewed.append({"p": provider, "n": ws.id.native, "ran": period.running_since})
            await _in_batches(
                conn,
                self._observation_upsert(listed=listing),
                changed,
                lambda c: observed_values(c[0], c[1], now, c[2]),
            )
            if renewed:
                await _forget_period(conn, renewed)
                await _ran_again(conn, renewed)
            if listing:
                await _unlist(conn, provider, [n for n, k in known.items() if k.listed])
            await write_samples(conn, provider, sample_rows(workspaces, now), now)
            await self._outbox(conn, events)
        return listed_before

    def _observation_upsert(self, *, listed: bool) -> PostgresInsert | SqliteInsert:
        insert = upsert(db.workspaces, self._dialect)
        if listed:
            insert = insert.values(listed=True)
        refreshed = _OBSERVED + (("listed",) if listed else ())
        return insert.on_conflict_do_update(
            index_elements=[db.workspaces.c.provider, db.workspaces.c.native_id],
            set_={name: insert.excluded[name] for name in refreshed},
        )

    async def load_memory(
        self,
        provider: str,
        *,
        samples_since: datetime | None = None,
        only: Sequence[str] | None = None,
    ) -> dict[WorkspaceId, Memory]:
        """Everything remembered about `provider`'s workspaces (or only those native ids),
        as `Memory` values.

        Utilisation samples are read only when asked for (`samples_since`): only
        gpu_below / cpu_below policies need them.
        """
        async with self._read() as conn:
            samples = (
                await read_samples(conn, provider, samples_since, only=only)
                if samples_since
                else {}
            )
            columns = [db.workspaces.c[name] for name in _REMEMBERED]
            query = select(*columns).where(_of(db.workspaces, provider, only))
            rows = (await conn.execute(query)).all()
            given = await _warnings_by_workspace(conn, provider, only)
            used = await _extensions_by_workspace(conn, provider, only)
            keys = await _last_action_keys(conn, provider, only)
        memory = {}
        for row in rows:
            ws = WorkspaceId(provider, shared(row.native_id))
            memory[ws] = memory_of(row, ws, given.pop(ws, NOTHING), used, keys)
        for ws, by_policy in given.items():  # warned about but never observed
            memory[ws] = Memory(warnings=by_policy)
        for ws, by_metric in samples.items():
            memory[ws] = replace(memory.get(ws, Memory()), samples=dict(by_metric))
        return memory

    async def workspace_row(self, ws: WorkspaceId) -> WorkspaceRow | None:
        async with self._read() as conn:
            row = (await conn.execute(_workspace_rows().where(_is(db.workspaces, ws)))).first()
        return None if row is None else WorkspaceRow(**row._mapping)

    async def list_workspaces(
        self,
        provider: str | None = None,
        state: State | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WorkspaceRow]:
        """Known workspaces in a stable order (provider, id), one page at a time."""
        query = _workspace_rows().order_by(db.workspaces.c.provider, db.workspaces.c.native_id)
        if provider is not None:
            query = query.where(db.workspaces.c.provider == provider)
        if state is not None:
            query = query.where(db.workspaces.c.last_state == str(state))
        async with self._read() as conn:
            rows = (await conn.execute(query.limit(limit).offset(offset))).all()
        return [WorkspaceRow(**row._mapping) for row in rows]

    # ------------------------------------------------------------ warnings, snoozes

    async def save_warning(
        self, ws: WorkspaceId, warning: Warning, events: Sequence[Event]
    ) -> None:
        """Record a warning given; warning again keeps the snoozes already used."""
        await self.save_warnings([(ws, warning)], events)

    async def save_warnings(
        self, warnings: Sequence[tuple[WorkspaceId, Warning]], events: Sequence[Event]
    ) -> None:
        """Record many warnings and their events in one transaction (one cycle's worth)."""
        rows = [
            {
                "provider": ws.provider,
                "native_id": ws.native,
                "policy": warning.policy,
                "verb": str(warning.verb),
                "warned_at": warning.warned_at,
                "due_at": warning.due_at,
                "snoozes_used": warning.snoozes_used,
                "event_id": warning.event_id,
            }
            for ws, warning in warnings
        ]
        insert = upsert(db.warnings, self._dialect)
        kept = db.warnings.c.snoozes_used
        stmt = insert.on_conflict_do_update(
            index_elements=[db.warnings.c.provider, db.warnings.c.native_id, db.warnings.c.policy],
            set_={
                "verb": insert.excluded.verb,
                "warned_at": insert.excluded.warned_at,
                "due_at": insert.excluded.due_at,
                "snoozes_used": _greater(kept, insert.excluded.snoozes_used),
                "event_id": insert.excluded.event_id,
            },
        )
        async with self._write() as conn:
            if rows:
                await conn.execute(stmt, rows)
            await self._outbox(conn, events)

    async def clear_warning(self, ws: WorkspaceId, policy: str, events: Sequence[Event]) -> None:
        await self.clear_warnings([(ws, policy)], events)

    async def clear_warnings(
        self, cleared: Sequence[tuple[WorkspaceId, str]], events: Sequence[Event]
    ) -> None:
        """Forget many warnings (by workspace and policy) and write their events, at once."""
        t = db.warnings
        stmt = delete(t).where(
            t.c.provider == bindparam("p"),
            t.c.native_id == bindparam("n"),
            t.c.policy == bindparam("pol"),
        )
        async with self._write() as conn:
            if cleared:
                await conn.execute(
                    stmt,
                    [{"p": ws.provider, "n": ws.native, "pol": policy} for ws, policy in cleared],
                )
            await self._outbox(conn, events)

    async def record_plans(
        self, plans: Sequence[PlannedAction], now: datetime, told: Callable[[str], Event]
    ) -> list[str]:
        """Dry run: record what would have been done, once per key; the keys that were new.

        Each new key's event (`told(key)`) is written with it; a key already recorded
        writes nothing, so a dry run tells each planned action once.
        """
        if not plans:
            return []
        rows = [
            {
                "idempotency_key": plan.key,
                "provider": plan.ws.provider,
                "native_id": plan.ws.native,
                "policy": plan.policy,
                "verb": str(plan.verb),
                "reason": plan.reason,
                "requested_at": now,
                "finished_at": now,
                "outcome": str(Outcome.PLANNED),
                "dry_run": True,
            }
            for plan in plans
        ]
        stmt = (
            upsert(db.actions, self._dialect)
            .on_conflict_do_nothing(index_elements=[db.actions.c.idempotency_key])
            .returning(db.actions.c.idempotency_key)
        )
        async with self._write() as conn:
            # Most plans were recorded cycles ago: looked up first, only new ones written.
            known = await _recorded_keys(conn, [plan.key for plan in plans])
            rows = [row for row in rows if row["idempotency_key"] not in known]
            new = [row.idempotency_key for row in await conn.execute(stmt, rows)] if rows else []
            await self._outbox(conn, [told(key) for key in new])
        return new

    async def snooze(self, ws: WorkspaceId, until: datetime, events: Sequence[Event]) -> None:
        """Hold actions on `ws` until `until`, counting one snooze on each of its warnings."""
        async with self._write() as conn:
            result = await conn.execute(
                update(db.workspaces).where(_is(db.workspaces, ws)).values(snoozed_until=until)
            )
            if result.rowcount == 0:
                raise UnknownWorkspace(f"cannot snooze {ws}: Warden has not seen it")
            await conn.execute(
                update(db.warnings)
                .where(_is(db.warnings, ws))
                .values(snoozes_used=db.warnings.c.snoozes_used + 1)
            )
            await self._outbox(conn, events)

    async def snooze_count(self, ws: WorkspaceId, policy: str) -> int:
        """Snoozes used on the warning `policy` gave `ws`; 0 without a warning."""
        query = select(db.warnings.c.snoozes_used).where(
            _is(db.warnings, ws), _policy(db.warnings, policy)
        )
        async with self._read() as conn:
            used = (await conn.execute(query)).scalar_one_or_none()
        return int(used or 0)

    async def due_warnings(self, provider: str | None = None) -> list[tuple[WorkspaceId, Warning]]:
        """Warnings whose action falls due, soonest first: exact-time jobs after a restart.

        NOTIFY warnings are left out: they only mark a notification as sent.
        """
        query = (
            select(db.warnings)
            .where(db.warnings.c.verb != str(Verb.NOTIFY))
            .order_by(db.warnings.c.due_at, db.warnings.c.provider, db.warnings.c.native_id)
        )
        if provider is not None:
            query = query.where(db.warnings.c.provider == provider)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [(workspace_id_of(row), warning_of(row)) for row in rows]

    # ------------------------------------------------------------ actions

    async def begin_action(
        self,
        *,
        key: str,
        ws: WorkspaceId,
        policy: str,
        verb: Verb,
        reason: str,
        now: datetime,
        dry_run: bool,
        events: Sequence[Event],
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a pending action; False, writing nothing, if `key` is already taken.

        `details` is what recovery needs to finish or repeat it after a crash."""
        stmt = (
            upsert(db.actions, self._dialect)
            .values(
                idempotency_key=key,
                provider=ws.provider,
                native_id=ws.native,
                policy=policy,
                verb=str(verb),
                reason=reason,
                requested_at=now,
                outcome=str(Outcome.PENDING),
                dry_run=dry_run,
                details=dict(details) if details else None,
            )
            .on_conflict_do_nothing(index_elements=[db.actions.c.idempotency_key])
            .returning(db.actions.c.id)
        )
        async with self._write() as conn:
            if (await conn.execute(stmt)).first() is None:
                return False
            await self._outbox(conn, events)
        return True

    async def finish_action(
        self,
        key: str,
        *,
        outcome: str,
        error: str | None,
        now: datetime,
        events: Sequence[Event],
    ) -> None:
        """Close a pending action and apply what its success means to the memory.

        A stop makes Warden the one who stopped the workspace (and resolves that
        policy's warning); a resume undoes that; an extension counts one more use.
        A dry run's success changes nothing. ActionNotPending if `key` is not pending.

        A failed, skipped or abandoned attempt releases its key (the row stays, renamed,
        for the audit), so that a later cycle may try again; a success or a plan keeps it.
        """
        result = Outcome(outcome)
        if result is Outcome.PENDING:
            raise ValueError("an action is finished with its outcome, not 'pending'")
        released = result in RELEASES_KEY
        kept_key = f"{key}#{result}@{now.isoformat()}" if released else key
        stmt = (
            update(db.actions)
            .where(
                db.actions.c.idempotency_key == key, db.actions.c.outcome == str(Outcome.PENDING)
            )
            .values(outcome=str(result), error=error, finished_at=now, idempotency_key=kept_key)
            .returning(
                db.actions.c.provider,
                db.actions.c.native_id,
                db.actions.c.policy,
                db.actions.c.verb,
                db.actions.c.dry_run,
            )
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                raise ActionNotPending(await _why_not_pending(conn, key))
            if result is Outcome.SUCCEEDED and not row.dry_run:
                await self._on_success(conn, workspace_id_of(row), row.policy, Verb(row.verb), now)
                if Verb(row.verb) in STOPS:
                    await _price_stop(conn, kept_key, workspace_id_of(row))
            await self._outbox(conn, events)

    async def _on_success(
        self, conn: AsyncConnection, ws: WorkspaceId, policy: str, verb: Verb, now: datetime
    ) -> None:
        if verb in (Verb.STOP, Verb.KILL_SWITCH):
            await self._mark_stopped(conn, ws, policy, now)
            await conn.execute(
                delete(db.warnings).where(_is(db.warnings, ws), _policy(db.warnings, policy))
            )
        elif verb in (Verb.RESUME, Verb.RELEASE):
            await conn.execute(
                update(db.workspaces)
                .where(_is(db.workspaces, ws))
                .values(stopped_by=None, stopped_at=None)
            )
        elif verb is Verb.EXTEND:
            await self._count_extension(conn, ws, policy)

    async def _mark_stopped(
        self, conn: AsyncConnection, ws: WorkspaceId, policy: str, now: datetime
    ) -> None:
        # An upsert, not an update: "who stopped it" must survive even for a workspace
        # no poll has recorded yet, or Warden would never resume what it stopped.
        insert = upsert(db.workspaces, self._dialect).values(
            provider=ws.provider,
            native_id=ws.native,
            first_seen_at=now,
            stopped_by=policy,
            stopped_at=now,
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[db.workspaces.c.provider, db.workspaces.c.native_id],
                set_={"stopped_by": policy, "stopped_at": now},
            )
        )

    async def _count_extension(self, conn: AsyncConnection, ws: WorkspaceId, policy: str) -> None:
        """One more extension in the current running period; the first of a new one."""
        period = select(db.workspaces.c.running_since).where(_is(db.workspaces, ws))
        since = (await conn.execute(period)).scalar_one_or_none()
        insert = upsert(db.extensions, self._dialect).values(
            provider=ws.provider,
            native_id=ws.native,
            policy=policy,
            used=1,
            period_started_at=since,
        )
        same_period = db.extensions.c.period_started_at.is_not_distinct_from(
            insert.excluded.period_started_at
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[
                    db.extensions.c.provider,
                    db.extensions.c.native_id,
                    db.extensions.c.policy,
                ],
                set_={
                    "used": case((same_period, db.extensions.c.used + 1), else_=1),
                    "period_started_at": insert.excluded.period_started_at,
                },
            )
        )

    async def pending_actions(self, provider: str | None = None) -> list[ActionRecord]:
        """Actions begun and never finished (a crash in between), oldest first."""
        query = (
            select(db.actions)
            .where(db.actions.c.outcome == str(Outcome.PENDING))
            .order_by(db.actions.c.requested_at, db.actions.c.id)
        )
        if provider is not None:
            query = query.where(db.actions.c.provider == provider)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [action_of(row) for row in rows]

    async def usual_actions(
        self, provider: str, verbs: Sequence[Verb], *, since: datetime
    ) -> dict[str, int]:
        """Per policy, the most actions of `verbs` it carried out in one cycle since `since`
        (the actions of one cycle share their `requested_at`): its usual share."""
        t = db.actions
        per_cycle = (
            select(t.c.policy, func.count().label("n"))
            .where(
                t.c.provider == provider,
                t.c.outcome == str(Outcome.SUCCEEDED),
                t.c.dry_run.is_(False),
                t.c.requested_at >= since,
                t.c.verb.in_([str(v) for v in verbs]),
            )
            .group_by(t.c.policy, t.c.requested_at)
            .subquery()
        )
        query = select(per_cycle.c.policy, func.max(per_cycle.c.n).label("most")).group_by(
            per_cycle.c.policy
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {str(row.policy): int(row.most) for row in rows}

    async def events_by_id(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The outbox events with these ids (those still kept)."""
        if not ids:
            return []
        query = select(db.events).where(db.events.c.id.in_(list(ids)))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [StoredEvent(**row._mapping) for row in rows]

    async def action(self, key: str) -> ActionRecord | None:
        """The action recorded under `key`, if any."""
        query = select(db.actions).where(db.actions.c.idempotency_key == key)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else action_of(row)

    # ------------------------------------------------------------ decisions

    async def record_decisions(
        self,
        decisions: Sequence[Decision],
        now: datetime,
        events: Sequence[Event],
        *,
        whole: str | None = None,
    ) -> None:
        """Keep each new decision with its facts, for `warden explain` and the admin API.

        A decision the same as the last one recorded for its workspace and policy (its
        head, `decision_digest`) is not recorded again: a dry run's
        "would stop" is kept once, from when it was first made. `whole` names the
        provider whose whole cycle `decisions` are: a workspace and policy with no
        decision in it loses an action's or a skip's head, so that the same one later is
        new again. A warning's or a clear's head stays: the cycles after a warning have
        no decision until it falls due (and writing its loss would make every quiet
        cycle write), and the same warning or clear cannot come back without another
        decision between them.
        """
        async with self._write() as conn:
            fresh, lost = await _compared_heads(conn, decisions, whole)
            digests = {head: decision_digest(d) for head, d in fresh.items()}
            new = [d for d in decisions if _head_of(d) in digests]
            if new:
                await _in_batches(
                    conn, db.decisions.insert(), new, lambda d: decision_values(d, now)
                )
                await _in_batches(
                    conn,
                    _head_upsert(self._dialect),
                    new,
                    lambda d: _head_values(d, digests[_head_of(d)], now),
                )
            if whole is not None and lost:
                await conn.execute(
                    delete(db.decision_heads).where(
                        _is_param(db.decision_heads),
                        db.decision_heads.c.policy == bindparam("pol"),
                    ),
                    [
                        {"p": provider, "n": native, "pol": policy}
                        for provider, native, policy in lost
                    ],
                )
            await self._outbox(conn, events)

    async def decisions_for(self, ws: WorkspaceId, limit: int = 20) -> list[StoredDecision]:
        """The latest decisions about `ws`, newest first."""
        query = (
            select(db.decisions)
            .where(_is(db.decisions, ws))
            .order_by(db.decisions.c.time.desc(), db.decisions.c.id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [decision_of(row) for row in rows]

    async def prune_decisions(self, before: datetime) -> int:
        """Forget decisions older than `before`; how many went. Decisions are not events."""
        async with self._write() as conn:
            result = await conn.execute(delete(db.decisions).where(db.decisions.c.time < before))
        return result.rowcount

    # ------------------------------------------------------------ outbox

    async def add_events(self, events: Sequence[Event]) -> None:
        """Write events that accompany no state change."""
        if not events:
            return
        async with self._write() as conn:
            await self._outbox(conn, events)

    async def events_after(self, seq: int, limit: int = 100) -> list[StoredEvent]:
        """Outbox events after `seq`, in order: the delivery cursor moves over these."""
        query = (
            select(db.events).where(db.events.c.seq > seq).order_by(db.events.c.seq).limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [StoredEvent(**row._mapping) for row in rows]

    # ------------------------------------------------------------ cycles

    async def last_cycle(self, provider: str) -> datetime | None:
        """The `now` of `provider`'s last successful cycle: the next cycle's `since`.

        A failed cycle decided nothing, so it does not move `since`: schedule edges
        that passed while a provider was down are still seen when it is back.
        """
        query = select(db.cycles.c.last_success_at).where(db.cycles.c.provider == provider)
        async with self._read() as conn:
            found: datetime | None = (await conn.execute(query)).scalar_one_or_none()
        return found

    async def cycle_state(self, provider: str) -> CycleState:
        """What the cycles of `provider` left: last success, last complete listing, outage."""
        query = select(db.cycles).where(db.cycles.c.provider == provider)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return CycleState(provider=provider)
        return CycleState(
            provider=provider,
            last_success_at=row.last_success_at,
            last_complete_at=row.last_complete_at,
            running=row.running,
            unreachable_since=row.unreachable_since,
        )

    async def mark_cycle(
        self,
        provider: str,
        now: datetime,
        success: bool,
        events: Sequence[Event] = (),
        *,
        complete_running: int | None = None,
        unreachable: bool | None = None,
    ) -> None:
        """Record a cycle. `complete_running`: the listing read every page and this many
        ran. `unreachable`: an outage begins (True, kept from its first cycle) or ends."""
        done: dict[str, Any] = {"last_cycle_at": now}
        if success:
            done["last_success_at"] = now
        if complete_running is not None:
            done |= {"last_complete_at": now, "running": complete_running}
        if unreachable is False:
            done["unreachable_since"] = None
        insert = upsert(db.cycles, self._dialect).values(provider=provider, **done)
        if unreachable:
            insert = insert.values(unreachable_since=now)
            done["unreachable_since"] = func.coalesce(db.cycles.c.unreachable_since, now)
        stmt = insert.on_conflict_do_update(index_elements=[db.cycles.c.provider], set_=done)
        async with self._write() as conn:
            await conn.execute(stmt)
            await self._outbox(conn, events)

    # ------------------------------------------------------------ leader lease

    # ------------------------------------------------------------ spend

    async def spend_points(self, provider: str) -> dict[WorkspaceId, Point]:
        """Where accrual stands for each of `provider`'s workspaces."""
        t = db.spend_points
        async with self._read() as conn:
            query = select(t.c.native_id, t.c.at, t.c.running, t.c.per_hour)
            rows: Any = await conn.execute(query.where(t.c.provider == provider))
            return {
                WorkspaceId(provider, native): Point(at, running, per_hour)
                for native, at, running, per_hour in rows
            }

    async def account_spend(
        self,
        provider: str,
        accruals: Sequence[Accrual],
        events: Sequence[Event],
    ) -> None:
        """Add each workspace's entries to the ledger and move its point, in one transaction."""
        ledger = [
            {
                "zone": entry.zone,
                "provider": provider,
                "native_id": a.ws.native,
                "day": entry.day.isoformat(),
                "owner": a.owner,
                "currency": "USD",
                "amount": entry.amount,
                "estimated": entry.amount if entry.estimated else Decimal(0),
                "incomplete": a.incomplete,
            }
            for a in accruals
            for entry in a.entries
        ]
        points = [
            {
                "provider": provider,
                "native_id": a.ws.native,
                "at": a.point.at,
                "running": a.point.running,
                "per_hour": a.point.per_hour,
            }
            for a in accruals
        ]
        add = upsert(db.spend_ledger, self._dialect)
        t = db.spend_ledger
        add = add.on_conflict_do_update(
            index_elements=[t.c.zone, t.c.provider, t.c.native_id, t.c.day],
            set_={
                "amount": t.c.amount + add.excluded.amount,
                "estimated": t.c.estimated + add.excluded.estimated,
                "incomplete": t.c.incomplete | add.excluded.incomplete,
                "owner": add.excluded.owner,
            },
        )
        move = upsert(db.spend_points, self._dialect)
        move = move.on_conflict_do_update(
            index_elements=[db.spend_points.c.provider, db.spend_points.c.native_id],
            set_={k: move.excluded[k] for k in ("at", "running", "per_hour")},
        )
        async with self._write() as conn:
            if ledger:
                await conn.execute(add, ledger)
            if points:
                await conn.execute(move, points)
            await self._outbox(conn, events)

    async def spend_by_day(
        self, day: date, zone: str = LEDGER_ZONE, *, until: datetime | None = None
    ) -> list[SpendRow]:
        """Every workspace's spend on one day (UTC unless a budget's zone is named), up
        to `until` if given (see `spend_between`)."""
        return await self.spend_between(day, day, zone, until=until)

    async def spend_between(
        self,
        first: date,
        last: date,
        zone: str,
        *,
        until: datetime | None = None,
        spans: Sequence[RunningSpan] | None = None,
    ) -> list[SpendRow]:
        """Every workspace's spend from local day `first` to `last` (inclusive) in `zone`,
        one row per workspace, dated `first`: the ledger's rows and the open spans, what
        a workspace running on at its rate has cost since its point up to its last
        sighting (see `open_spans`), or up to `until` when that is earlier. `spans`:
        `running_spans` already read (a review reads them once for all its budgets)."""
        rows = await self._ledger_between(first, last, zone)
        by_ws = {row.ws: row for row in rows}
        if spans is None:
            spans = await self.running_spans()
        for span in spans:
            amount = span_cost(span.point, span.seen, zone, first, last, until=until)
            if not amount:
                continue
            row = by_ws.get(span.ws)
            by_ws[span.ws] = (
                replace(row, amount=row.amount + amount)
                if row is not None
                else SpendRow(
                    ws=span.ws,
                    owner=span.owner,
                    day=first,
                    amount=amount,
                    estimated=Decimal(0),
                    incomplete=False,
                )
            )
        return list(by_ws.values())

    async def running_spans(
        self, polled: Mapping[str, datetime] | None = None
    ) -> list[RunningSpan]:
        """Every point that says running, with its workspace's owner and last sighting
        (`_seen_at`; `polled`: providers listed at these times and not yet marked, a
        cycle's own poll while it reviews budgets)."""
        p, w, c = db.spend_points, db.workspaces, db.cycles
        query = (
            select(
                p.c.provider,
                p.c.native_id,
                p.c.at,
                p.c.per_hour,
                w.c.owner,
                w.c.listed,
                _seen_at(),
            )
            .select_from(
                p.outerjoin(
                    w, and_(w.c.provider == p.c.provider, w.c.native_id == p.c.native_id)
                ).outerjoin(c, c.c.provider == p.c.provider)
            )
            .where(p.c.running.is_(True))
        )
        async with self._read() as conn:
            rows: Any = (await conn.execute(query)).all()
        polled = polled or {}
        return [
            RunningSpan(
                ws=WorkspaceId(shared(provider), shared(native)),
                owner=shared(owner or ""),
                point=Point(at, True, None if rate is None else shared_decimal(rate)),
                seen=polled.get(provider, seen) if listed else seen,
            )
            for provider, native, at, rate, owner, listed, seen in rows
        ]

    async def _ledger_between(self, first: date, last: date, zone: str) -> list[SpendRow]:
        t = db.spend_ledger
        query = (
            select(
                t.c.provider,
                t.c.native_id,
                func.max(t.c.owner).label("owner"),
                func.sum(t.c.amount).label("amount"),
                func.sum(t.c.estimated).label("estimated"),
                func.max(case((t.c.incomplete, 1), else_=0)).label("incomplete"),
            )
            .where(t.c.zone == zone, t.c.day.between(first.isoformat(), last.isoformat()))
            .group_by(t.c.provider, t.c.native_id)
        )
        async with self._read() as conn:
            rows = await conn.execute(query)
            return [
                SpendRow(
                    ws=WorkspaceId(r.provider, r.native_id),
                    owner=r.owner,
                    day=first,
                    amount=Decimal(r.amount),
                    estimated=Decimal(r.estimated),
                    incomplete=bool(r.incomplete),
                )
                for r in rows
            ]

    # ------------------------------------------------------------ spend records (feeds)

    async def add_spend_records(
        self, records: Sequence[SpendRecord], *, source: str, now: datetime
    ) -> tuple[int, int]:
        """Keep each record once per (provider, id); (new, duplicate) counts.

        All or nothing, in one transaction. A duplicate keeps the first copy as it was,
        even when the second says something else: a record's id names one charge.
        """
        if not records:
            return 0, 0
        unique = {(r.provider, r.id): r for r in reversed(records)}  # the first copy wins
        t = db.spend_records
        stmt = (
            upsert(t, self._dialect)
            .on_conflict_do_nothing(index_elements=[t.c.provider, t.c.record_id])
            .returning(t.c.record_id)
        )
        values = [spend_record_values(r, source, now) for r in unique.values()]
        async with self._write() as conn:
            new = len((await conn.execute(stmt, values)).all())
        return new, len(records) - new

    async def spend_records_between(self, start: datetime, end: datetime) -> list[SpendRecord]:
        """The records incurred from `start` (inclusive) to `end` (exclusive), oldest first."""
        t = db.spend_records
        query = (
            select(t)
            .where(t.c.at >= start, t.c.at < end)
            .order_by(t.c.at, t.c.provider, t.c.record_id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [spend_record_of(r) for r in rows]

    # ------------------------------------------------------------ budgets

    async def snapshots(self, *, besides: str | None = None) -> dict[WorkspaceId, Workspace]:
        """The latest snapshot of every known workspace of every provider (but `besides`)."""
        query = _workspace_rows()
        if besides is not None:
            query = query.where(db.workspaces.c.provider != besides)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        found = (snapshot_from_row(WorkspaceRow(**row._mapping)) for row in rows)
        return {ws.id: ws for ws in found if ws is not None}

    async def spend_rates(self) -> dict[WorkspaceId, Decimal]:
        """What each workspace running at its last observation costs per hour."""
        t = db.spend_points
        query = select(t).where(t.c.running.is_(True), t.c.per_hour.is_not(None))
        async with self._read() as conn:
            rows = await conn.execute(query)
            return {WorkspaceId(r.provider, r.native_id): Decimal(r.per_hour) for r in rows}

    async def running_points(
        self, *, spans: Sequence[RunningSpan] | None = None
    ) -> dict[WorkspaceId, Point]:
        """The spend point of every workspace running at its last observation: its rate,
        and up to when its spend is known: its last sighting, to which its open span
        runs (`spans`: as for `spend_between`)."""
        if spans is None:
            spans = await self.running_spans()
        return {
            span.ws: replace(span.point, at=max(span.point.at, span.seen))
            if span.seen is not None
            else span.point
            for span in spans
        }

    async def last_polls(self) -> dict[str, datetime | None]:
        """Each provider's last successful poll, as the cycles recorded it."""
        query = select(db.cycles.c.provider, db.cycles.c.last_success_at)
        async with self._read() as conn:
            return {r.provider: r.last_success_at for r in await conn.execute(query)}

    # ------------------------------------------------------------ owners

    async def stops(self, *, since: datetime | None = None) -> list[Stop]:
        """Every stop Warden made (never a dry run) from `since` on, with what followed."""
        a, w = db.actions, db.workspaces
        query = (
            select(
                a.c.provider,
                a.c.native_id,
                a.c.policy,
                a.c.verb,
                a.c.finished_at,
                a.c.per_hour,
                a.c.ran_again_at,
                w.c.owner,
                w.c.last_state,
                _seen_at(),
            )
            .select_from(
                a.outerjoin(
                    w, and_(w.c.provider == a.c.provider, w.c.native_id == a.c.native_id)
                ).outerjoin(db.cycles, db.cycles.c.provider == w.c.provider)
            )
            .where(
                a.c.verb.in_([str(v) for v in STOPS]),
                a.c.outcome == str(Outcome.SUCCEEDED),
                a.c.dry_run.is_(False),
                a.c.finished_at.is_not(None),
            )
            .order_by(a.c.finished_at, a.c.id)
        )
        if since is not None:
            query = query.where(a.c.finished_at >= since)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Stop(
                ws=WorkspaceId(r.provider, r.native_id),
                owner=r.owner or "",
                policy=r.policy,
                verb=r.verb,
                stopped_at=r.finished_at,
                per_hour=None if r.per_hour is None else Decimal(r.per_hour),
                ran_again_at=r.ran_again_at,
                last_state=r.last_state,
                last_seen_at=r.last_seen_at,
            )
            for r in rows
        ]

    async def keep_alive(
        self, ws: WorkspaceId, *, at: datetime, until: datetime, by: str, events: Sequence[Event]
    ) -> None:
        """Mark `ws` in use until `until` (asked for at `at`, by `by`), with its event."""
        values = {"kept_alive_at": at, "kept_alive_until": until, "kept_alive_by": by}
        async with self._write() as conn:
            result = await conn.execute(
                update(db.workspaces).where(_is(db.workspaces, ws)).values(**values)
            )
            if result.rowcount == 0:
                raise UnknownWorkspace(f"cannot keep {ws} alive: Warden has not seen it")
            await self._outbox(conn, events)

    async def spend_sources(self) -> list[SourceState]:
        """How fresh each spend feed's (and push's) data is, per provider."""
        async with self._read() as conn:
            rows = (await conn.execute(select(db.spend_sources))).all()
        return [
            SourceState(
                source=r.source,
                provider=r.provider,
                read_at=r.read_at,
                as_of=r.as_of,
                lagging_since=r.lagging_since,
            )
            for r in rows
        ]

    async def save_spend_source(self, state: SourceState, events: Sequence[Event] = ()) -> None:
        """Write one source's freshness (and the events its lag raised), together."""
        insert = upsert(db.spend_sources, self._dialect).values(
            source=state.source,
            provider=state.provider,
            read_at=state.read_at,
            as_of=state.as_of,
            lagging_since=state.lagging_since,
        )
        t = db.spend_sources
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.source, t.c.provider],
            set_={k: insert.excluded[k] for k in ("read_at", "as_of", "lagging_since")},
        )
        async with self._write() as conn:
            await conn.execute(stmt)
            await self._outbox(conn, events)

    async def claim_digest(
        self,
        digest: str,
        *,
        start: datetime,
        end: datetime,
        now: datetime,
        events: Sequence[Event],
    ) -> bool:
        """Tell a digest's period once: its row and its events, or nothing if told."""
        t = db.digests_sent
        stmt = (
            upsert(t, self._dialect)
            .values(
                digest=digest, period_start=start, period_end=end, sent_at=now, owners=len(events)
            )
            .on_conflict_do_nothing(index_elements=[t.c.digest, t.c.period_start])
            .returning(t.c.digest)
        )
        async with self._write() as conn:
            if (await conn.execute(stmt)).first() is None:
                return False
            await self._outbox(conn, events)
        return True

    async def latest_events(self, limit: int) -> list[StoredEvent]:
        """The newest `limit` events of the outbox, newest first."""
        query = select(db.events).order_by(db.events.c.seq.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [StoredEvent(**row._mapping) for row in rows]

    async def budget_windows(
        self, *, open_at: datetime | None = None, pending_undo: bool = False
    ) -> list[WindowState]:
        """Budget windows that contain `open_at`, and/or ended ones with an undo left."""
        t = db.budget_windows
        conditions = []
        if open_at is not None:
            conditions.append(and_(t.c.window_start <= open_at, t.c.window_end > open_at))
        if pending_undo:
            conditions.append(t.c.undone.is_(False))
        if not conditions:
            return []
        async with self._read() as conn:
            rows = await conn.execute(select(t).where(or_(*conditions)))
            return [window_state_of(r) for r in rows]

    async def save_budget_windows(
        self, states: Sequence[WindowState], events: Sequence[Event] = ()
    ) -> None:
        """Write each window's state (and the events its change raised), in one transaction."""
        values = [window_state_values(s) for s in states]
        insert = upsert(db.budget_windows, self._dialect)
        t = db.budget_windows
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.budget, t.c.scope, t.c.window_start],
            set_={k: insert.excluded[k] for k in ("window_end", "fired", "acted", "undone")},
        )
        async with self._write() as conn:
            if values:
                await conn.execute(stmt, values)
            await self._outbox(conn, events)

    async def try_acquire_lease(
        self, name: str, holder: str, now: datetime, ttl: timedelta
    ) -> Grant | None:
        """Take the lease `name` (or renew it if ours) until `now + ttl`; None if another
        holds it. Never fenced: taking a lease is how a fence is made."""
        async with self._writer.begin() as conn:
            return await lease.try_acquire(conn, name=name, holder=holder, now=now, ttl=ttl)

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give up the lease if `holder` has it; True if it did."""
        async with self._writer.begin() as conn:
            return await lease.release(conn, name=name, holder=holder)

    async def claim_leases(
        self, names: list[str], holder: str, now: datetime, ttl: timedelta, *, limit: int
    ) -> list[Grant]:
        """Take up to `limit` of the free leases among `names` (see `lease.claim_free`)."""
        async with self._writer.begin() as conn:
            return await lease.claim_free(
                conn, names=names, holder=holder, now=now, ttl=ttl, limit=limit
            )

    async def prune_leases(self, prefix: str, before: datetime) -> int:
        """Forget presence leases that lapsed before `before` (see `lease.prune`)."""
        async with self._writer.begin() as conn:
            return await lease.prune(conn, prefix=prefix, before=before)

    async def live_holders(self, prefix: str, now: datetime) -> list[str]:
        """Who holds an unexpired lease named `prefix…`: the replicas alive, by presence."""
        async with self._read() as conn:
            return await lease.live_holders(conn, prefix=prefix, now=now)

    async def end_sessions_of(self, replicas: Sequence[str]) -> int:
        """End the database sessions of replicas whose leases have lapsed (PostgreSQL),
        so that a replica paused mid-statement holds no lock against the one taking
        over; how many were ended. The database role needs the right to signal its own
        sessions (it has it for sessions of the same role). SQLite: nothing to end."""
        if self._dialect != "postgresql" or not replicas:
            return 0
        query = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = ANY(:names)"
        )
        names = [session_name(replica) for replica in replicas]
        async with self._writer.begin() as conn:
            return int((await conn.execute(query, {"names": names})).scalar_one())

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Hold a cross-replica lock named `name` for the block (PostgreSQL: a
        transaction-scoped advisory lock, released if this replica stalls, see
        `stalled_after`); on SQLite one process runs, and this holds nothing."""
        if self._dialect != "postgresql":
            yield
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        async with self._writer.begin() as conn:
            await _advisory_lock(conn, key)
            yield

    async def leases(self) -> list[Grant]:
        """Every lease as it stands: holder, epoch, expiry."""
        async with self._read() as conn:
            return await lease.holders(conn)


def _check_sqlite_directory(url: str) -> None:
    """Fail early and plainly when a SQLite file's directory is missing.

    aiosqlite would fail too, but less clearly, and its worker thread outlives a
    failed connect.
    """
    parsed = async_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    directory = Path(database).parent
    if not directory.is_dir():
        raise StoreUnavailable(f"cannot open the sqlite state store: no directory {directory}")


# ---------------------------------------------------------------- statements


async def _advisory_lock(conn: AsyncConnection, key: int) -> None:
    """A PostgreSQL lock held until the transaction ends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@dataclass(frozen=True, slots=True)
class _Known:
    """What a poll compares a workspace with: its period, digest and listing."""

    period: Period
    digest: str | None
    listed: bool

    def differs(self, period: Period, digest: str, *, listed: bool) -> bool:
        """Whether the row must be written: facts or period changed, or listed again."""
        return self.digest != digest or self.period != period or (listed and not self.listed)


async def _known(
    conn: AsyncConnection, provider: str, only: Sequence[str] | None = None
) -> dict[str, _Known]:
    w = db.workspaces
    query = select(w.c.native_id, w.c.running_since, w.c.started_at, w.c.digest, w.c.listed)
    rows: Any = await conn.execute(query.where(_of(w, provider, only)))
    return {
        native: _Known(Period(since, started), digest, listed)
        for native, since, started, digest, listed in rows
    }


def _seen_at() -> Any:
    """When a workspace was last seen: at its provider's last listing while listed (an
    unchanged workspace is not written each poll), else when its row was last written.
    Needs `cycles` joined on the provider."""
    w, c = db.workspaces, db.cycles
    listed = _greater(c.c.last_success_at, w.c.last_seen_at)
    return case((w.c.listed.is_(True), listed), else_=w.c.last_seen_at).label("last_seen_at")


def _workspace_rows() -> Any:
    """Rows of `workspaces` as `WorkspaceRow` takes them, last seen as `_seen_at` says."""
    w, c = db.workspaces, db.cycles
    hidden = {"digest", "listed", "last_seen_at"}
    columns = [col for col in w.c if col.name not in hidden]
    return select(*columns, _seen_at()).select_from(w.outerjoin(c, c.c.provider == w.c.provider))


_LOST_WHEN_ABSENT = frozenset({"act", "skip"})  # see `Store.record_decisions`


Head = tuple[str, str, str]  # provider, native id, policy: plain strings, cheap to hash


HEADS_READ = 5_000  # heads compared per fetch: at 100k, not all of them held at once


async def _compared_heads(
    conn: AsyncConnection, decisions: Sequence[Decision], whole: str | None
) -> tuple[dict[Head, Decision], list[Head]]:
    """`decisions` by head, less those the same as their head (`decision_digest`), and
    the heads of kind act or skip that have no decision: every one of the `whole`
    provider's, else of `decisions`' workspaces. The heads stream past in fetches
    of HEADS_READ, each compared as it comes: none is kept."""
    fresh = {_head_of(d): d for d in decisions}
    lost: list[Head] = []
    async for rows in _head_rows(conn, decisions, whole):
        for provider, native, policy, digest, kind in rows:
            head = (provider, native, policy)
            d = fresh.get(head)
            if d is None:
                if kind in _LOST_WHEN_ABSENT:
                    lost.append(head)
            elif decision_digest(d) == digest:
                del fresh[head]
    return fresh, lost


async def _head_rows(
    conn: AsyncConnection, decisions: Sequence[Decision], whole: str | None
) -> AsyncIterator[Sequence[Any]]:
    """The heads (provider, native id, policy, digest, kind) to compare `decisions`
    with, a fetch at a time: all of the `whole` provider's, else theirs."""
    h = db.decision_heads
    query = select(h.c.provider, h.c.native_id, h.c.policy, h.c.digest, h.c.kind)
    if whole is not None:
        streamed = await conn.stream(query.where(h.c.provider == whole))
        async for rows in streamed.partitions(HEADS_READ):
            yield rows
        return
    by_provider: dict[str, list[str]] = defaultdict(list)
    for d in decisions:
        by_provider[d.workspace.provider].append(d.workspace.native)
    for provider, natives in by_provider.items():
        for chunk in batched(natives):
            yield (await conn.execute(query.where(_of(h, provider, chunk)))).all()


def _head_of(decision: Decision) -> Head:
    return decision.workspace.provider, decision.workspace.native, decision.policy


def _head_upsert(dialect: str) -> PostgresInsert | SqliteInsert:
    insert = upsert(db.decision_heads, dialect)
    return insert.on_conflict_do_update(
        index_elements=[db.decision_heads.c[k] for k in ("provider", "native_id", "policy")],
        set_={k: insert.excluded[k] for k in ("digest", "kind", "time")},
    )


def _head_values(decision: Decision, digest: str, now: datetime) -> dict[str, Any]:
    ws = decision.workspace
    return {
        "provider": ws.provider,
        "native_id": ws.native,
        "policy": decision.policy,
        "digest": digest,
        "kind": str(decision.kind),
        "time": now,
    }


async def _in_batches(
    conn: AsyncConnection, statement: Any, items: Sequence[T], to_row: Callable[[T], Any]
) -> None:
    """`statement` executed for every item's row, WRITE_BATCH rows built at a time: a
    first cycle of 100k workspaces holds one batch of rows in memory, not all of them."""
    for batch in batched(items, WRITE_BATCH):
        await conn.execute(statement, [to_row(item) for item in batch])


async def _recorded_keys(conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the actions journal holds already."""
    column = db.actions.c.idempotency_key
    found: set[str] = set()
    for chunk in batched(keys):
        found.update((await conn.execute(select(column).where(column.in_(chunk)))).scalars())
    return found


async def _unlist(conn: AsyncConnection, provider: str, natives: Sequence[str]) -> None:
    """Workspaces the listing no longer shows: seen last at the listing before this one."""
    if not natives:
        return
    w, marker = db.workspaces, _listing_marker(provider)
    for chunk in batched(natives):
        await conn.execute(
            update(w)
            .where(w.c.provider == provider, w.c.native_id.in_(chunk))
            .values(listed=False, last_seen_at=_greater(marker, w.c.last_seen_at))
        )


def _listing_marker(provider: str) -> Any:
    """The time of `provider`'s last listing (its cycle marker), as a scalar subquery."""
    c = db.cycles
    return select(c.c.last_success_at).where(c.c.provider == provider).scalar_subquery()


def batched(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    """`items` in consecutive slices of at most `size` (itertools.batched is 3.12's)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _forget_period(conn: AsyncConnection, renewed: list[dict[str, Any]]) -> None:
    """Forget Warden's stop and the extensions of the periods that just ended."""
    await conn.execute(
        update(db.workspaces)
        .where(_is_param(db.workspaces))
        .values(stopped_by=None, stopped_at=None),
        renewed,
    )
    await conn.execute(delete(db.extensions).where(_is_param(db.extensions)), renewed)


STOPS = (Verb.STOP, Verb.KILL_SWITCH)  # what savings count


async def _price_stop(conn: AsyncConnection, key: str, ws: WorkspaceId) -> None:
    """Keep the rate a stop took away: its spend point's, while that still says running
    (a stop found done after a crash may find it stopped already: no rate, no guess)."""
    points = db.spend_points
    rate = (
        select(points.c.per_hour)
        .where(_is(points, ws), points.c.running.is_(True))
        .scalar_subquery()
    )
    await conn.execute(
        update(db.actions).where(db.actions.c.idempotency_key == key).values(per_hour=rate)
    )


async def _ran_again(conn: AsyncConnection, ran: list[dict[str, Any]]) -> None:
    """The open stops of workspaces whose new running period began: when they ran again."""
    t = db.actions
    await conn.execute(
        update(t)
        .where(
            t.c.provider == bindparam("p"),
            t.c.native_id == bindparam("n"),
            # Spelt out, not IN (...): an expanding parameter cannot go to executemany.
            or_(*(t.c.verb == str(v) for v in STOPS)),
            t.c.outcome == str(Outcome.SUCCEEDED),
            t.c.dry_run.is_(False),
            t.c.ran_again_at.is_(None),
        )
        .values(ran_again_at=bindparam("ran")),
        ran,
    )


async def _warnings_by_workspace(
    conn: AsyncConnection, provider: str, only: Sequence[str] | None = None
) -> dict[WorkspaceId, dict[str, Warning]]:
    rows = (await conn.execute(select(db.warnings).where(_of(db.warnings, provider, only)))).all()
    found: dict[WorkspaceId, dict[str, Warning]] = defaultdict(dict)
    for row in rows:
        warning = warning_of(row)
        found[WorkspaceId(provider, row.native_id)][warning.policy] = warning
    return found


async def _extensions_by_workspace(
    conn: AsyncConnection, provider: str, only: Sequence[str] | None = None
) -> dict[WorkspaceId, dict[str, int]]:
    e = db.extensions
    rows: Any = await conn.execute(
        select(e.c.native_id, e.c.policy, e.c.used).where(_of(e, provider, only))
    )
    found: dict[WorkspaceId, dict[str, int]] = defaultdict(dict)
    for native, policy, used in rows:
        found[WorkspaceId(provider, native)][shared(policy)] = used
    return found


async def _last_action_keys(
    conn: AsyncConnection, provider: str, only: Sequence[str] | None = None
) -> dict[WorkspaceId, str]:
    latest = (
        select(func.max(db.actions.c.id))
        .where(_of(db.actions, provider, only))
        .group_by(db.actions.c.native_id)
    )
    query = select(db.actions.c.native_id, db.actions.c.idempotency_key).where(
        db.actions.c.id.in_(latest)
    )
    rows: Any = await conn.execute(query)
    return {WorkspaceId(provider, native): key for native, key in rows}


async def _why_not_pending(conn: AsyncConnection, key: str) -> str:
    query = select(db.actions.c.outcome).where(db.actions.c.idempotency_key == key)
    outcome = (await conn.execute(query)).scalar_one_or_none()
    if outcome is None:
        return f"no action has the key {key!r}"
    return f"the action {key!r} is already {outcome}"


def _of(table: Table, provider: str, only: Sequence[str] | None = None) -> ColumnElement[bool]:
    """The rows of `provider` (of only these native ids, when given)."""
    if only is None:
        return table.c.provider == provider
    return and_(table.c.provider == provider, table.c.native_id.in_(list(only)))


def _is(table: Table, ws: WorkspaceId) -> ColumnElement[bool]:
    return and_(table.c.provider == ws.provider, table.c.native_id == ws.native)


def _is_param(table: Table) -> ColumnElement[bool]:
    """The workspace named by the `p` and `n` parameters of an executemany."""
    return and_(table.c.provider == bindparam("p"), table.c.native_id == bindparam("n"))


def _policy(table: Table, policy: str) -> ColumnElement[bool]:
    return table.c.policy == policy


def _greater(a: Any, b: Any) -> Any:
    """The larger of two values, spelt the same on both backends (no GREATEST in SQLite)."""
    return case((a > b, a), else_=b)
