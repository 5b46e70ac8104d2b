"""The state store's behaviour, on SQLite files in tmp_path and on PostgreSQL.

Every test runs on both backends through the `database` fixture (the PostgreSQL
case in a fresh schema, and failing, not skipped, when the server is down).
"Reopening" always opens a new Store on the same database, never reuses the object.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError

from tests.conftest import POSTGRES_URL
from tests.test_store_postgres import fresh_schema
from warden.model import (
    Decision,
    DecisionKind,
    Event,
    Memory,
    State,
    Verb,
    Warning,
    Workspace,
    WorkspaceId,
)
from warden.store import (
    ActionNotPending,
    Outcome,
    Store,
    StoreUnavailable,
    UnknownWorkspace,
    snapshot_from_row,
)
from warden.store.engine import create_engine
from warden.store.lease import Fence, Fenced
from warden.store.migrate import head_revision
from warden.store.period import Period, next_period
from warden.store.tables import metadata

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
P = "coder-prod"
WS = WorkspaceId(P, "ws-1")

Opener = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Where the store lives: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield {"url": f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}", "schema": None}
    else:
        async with fresh_schema() as schema:
            yield {"url": POSTGRES_URL, "schema": schema}


@pytest.fixture
async def open_store(database: dict[str, Any]) -> AsyncIterator[Opener]:
    """Opens a new Store on the test's database each time it is called."""
    opened: list[Store] = []

    async def open_(*, migrate: bool = True) -> Store:
        store = await Store.open(database["url"], schema=database["schema"])
        opened.append(store)
        if migrate:
            await store.migrate()
        return store

    yield open_
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(open_store: Opener) -> Store:
    return await open_store()


def workspace(
    native: str,
    *,
    now: datetime,
    state: State = State.RUNNING,
    running: timedelta | None = H,
    provider: str = P,
    **fields: Any,
) -> Workspace:
    """A snapshot seen at `now`; the platform says it started `running` ago."""
    started = None if running is None else now - running
    base: dict[str, Any] = {"name": native, "owner": "alice", "started_at": started}
    return Workspace(
        id=WorkspaceId(provider, native), state=state, observed_at=now, **(base | fields)
    )


def event(type_: str = "warden.workspace.warned", **data: Any) -> Event:
    return Event(id=str(uuid.uuid4()), type=type_, subject=str(WS), time=NOW, data=data)


def warning(policy: str = "idle", *, due: timedelta = 15 * M, **fields: Any) -> Warning:
    return Warning(policy=policy, verb=Verb.STOP, warned_at=NOW, due_at=NOW + due, **fields)


async def event_ids(store: Store) -> list[str]:
    return [e.id for e in await store.events_after(0, limit=1000)]


async def begin(store: Store, key: str, **fields: Any) -> bool:
    """begin_action with defaults: stop WS for the idle policy, now, no events."""
    defaults: dict[str, Any] = {
        "ws": WS,
        "policy": "idle",
        "verb": Verb.STOP,
        "reason": "r",
        "now": NOW,
        "dry_run": False,
        "events": [],
    }
    return await store.begin_action(key=key, **(defaults | fields))


async def act(
    store: Store, key: str, verb: Verb, *, policy: str = "idle", dry_run: bool = False
) -> None:
    """Begin and finish one successful action."""
    assert await begin(store, key, verb=verb, policy=policy, dry_run=dry_run)
    outcome = "planned" if dry_run else "succeeded"
    await store.finish_action(key, outcome=outcome, error=None, now=NOW, events=[])


async def memory_of(store: Store, ws: WorkspaceId = WS) -> Memory:
    return (await store.load_memory(ws.provider))[ws]


async def observe(store: Store, now: datetime, **fields: Any) -> None:
    await store.record_observation(P, [workspace("ws-1", now=now, **fields)], now)


# ---------------------------------------------------------------- schema


async def test_migrations_are_idempotent_and_end_at_head(open_store: Opener) -> None:
    """A new database has no revision; migrating twice leaves it at the head."""
    store = await open_store(migrate=False)
    assert await store.current_revision() is None
    await store.migrate()
    await store.migrate()
    assert await store.current_revision() == head_revision()


async def test_migrated_schema_matches_the_table_definitions(
    store: Store, database: dict[str, Any]
) -> None:
    """Alembic finds nothing to autogenerate: the revision creates tables.py exactly."""
    engine = create_engine(database["url"], schema=database["schema"])
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_ping_answers_true(store: Store) -> None:
    """An open store's database answers."""
    assert await store.ping()


# ---------------------------------------------------------------- transactional outbox


async def test_an_idempotency_key_stays_taken_after_reopening(open_store: Opener) -> None:
    """A second process (a reopened store) cannot begin the same action again."""
    first = await open_store()
    assert await begin(first, "k1")
    await first.aclose()
    again = await open_store()
    assert not await begin(again, "k1", now=NOW + H)
    assert [a.key for a in await again.pending_actions()] == ["k1"]


async def test_a_duplicate_action_writes_no_event(store: Store) -> None:
    """begin_action refused by its key writes neither the action nor its event."""
    first, second = event(), event()
    assert await begin(store, "k1", events=[first])
    assert not await begin(store, "k1", events=[second])
    assert await event_ids(store) == [first.id]


async def test_events_written_with_a_state_change_are_there_after_reopening(
    open_store: Opener,
) -> None:
    """The warning and its event commit together and survive the process."""
    store = await open_store()
    told = event()
    await store.save_warning(WS, warning(), [told])
    await store.aclose()
    again = await open_store()
    assert await event_ids(again) == [told.id]
    assert (await memory_of(again)).warnings == {"idle": warning()}


async def test_a_failed_state_change_writes_no_event(store: Store) -> None:
    """Finishing an unknown action raises, and its event is not written either."""
    with pytest.raises(ActionNotPending, match="no action"):
        await store.finish_action(
            "nope", outcome="succeeded", error=None, now=NOW, events=[event()]
        )
    assert await event_ids(store) == []


async def test_a_failed_event_write_undoes_the_state_change(store: Store) -> None:
    """An event that cannot be written (its id is taken) rolls the warning back too."""
    taken = event()
    await store.add_events([taken])
    with pytest.raises(IntegrityError):
        await store.save_warning(WS, warning(), [taken])
    assert await store.load_memory(P) == {}
    assert await event_ids(store) == [taken.id]


async def test_events_come_back_in_order_a_page_at_a_time(store: Store) -> None:
    """The delivery cursor: events after a seq, oldest first, at most `limit`."""
    written = [event(n=i) for i in range(5)]
    await store.add_events(written[:2])
    await store.add_events(written[2:])
    first = await store.events_after(0, limit=3)
    rest = await store.events_after(first[-1].seq, limit=3)
    assert [e.id for e in first + rest] == [e.id for e in written]
    assert [e.event() for e in first + rest] == written
    assert all(e.created_at.tzinfo is UTC for e in first)


# ---------------------------------------------------------------- observations and memory


async def test_memory_round_trips(store: Store) -> None:
    """What the store was told comes back as the Memory the decision core reads."""
    await observe(store, NOW, running=2 * H)
    await store.save_warning(WS, warning("idle"), [])
    await store.save_warning(WS, warning("lifetime", due=H), [])
    await act(store, "ext-1", Verb.EXTEND, policy="lifetime")
    await store.snooze(WS, NOW + 30 * M, [])
    assert await memory_of(store) == Memory(
        first_seen_at=NOW,
        running_since=NOW - 2 * H,
        warnings={
            "idle": warning("idle", snoozes_used=1),
            "lifetime": warning("lifetime", due=H, snoozes_used=1),
        },
        snoozed_until=NOW + 30 * M,
        extensions_used={"lifetime": 1},
        last_action_key="ext-1",
    )


async def test_memory_of_a_workspace_warned_but_never_observed(store: Store) -> None:
    """A warning alone is remembered; nothing else is invented."""
    await store.save_warning(WS, warning(), [])
    assert await store.load_memory(P) == {WS: Memory(warnings={"idle": warning()})}


async def test_memory_is_per_provider(store: Store) -> None:
    """Another provider's workspaces are not in this provider's memory."""
    await store.record_observation("other", [workspace("ws-1", now=NOW, provider="other")], NOW)
    assert await store.load_memory(P) == {}


async def test_an_observation_of_another_provider_is_refused(store: Store) -> None:
    """A snapshot filed under the wrong provider is a bug: nothing is written."""
    with pytest.raises(ValueError, match="not a workspace of"):
        await store.record_observation(P, [workspace("ws-1", now=NOW, provider="other")], NOW)
    assert await store.list_workspaces() == []


@pytest.mark.parametrize(
    ("previous", "state", "started", "expected", "is_new"),
    [
        (None, State.RUNNING, None, Period(NOW, None), True),
        (None, State.RUNNING, NOW - H, Period(NOW - H, NOW - H), True),
        (Period(NOW - H, NOW - H), State.RUNNING, NOW - H, Period(NOW - H, NOW - H), False),
        (Period(NOW - H, NOW - H), State.RUNNING, NOW - M, Period(NOW - M, NOW - M), True),
        (Period(NOW - H, None), State.RUNNING, NOW - M, Period(NOW - H, NOW - M), False),
        (Period(NOW - H, NOW - H), State.STOPPING, None, Period(None, None), False),
        (Period(NOW - H, NOW - H), State.UNKNOWN, None, Period(NOW - H, NOW - H), False),
    ],
)
def test_next_period(
    previous: Period | None, state: State, started: datetime | None, expected: Period, is_new: bool
) -> None:
    """A period starts on the first running sight or a later platform start, ends off."""
    seen = workspace("ws-1", now=NOW, state=state, running=None, started_at=started)
    assert next_period(previous, seen, NOW) == (expected, is_new)


async def test_first_seen_at_is_the_first_observation(store: Store) -> None:
    """Later polls refresh the row but not when Warden first saw it."""
    await observe(store, NOW)
    await observe(store, NOW + H)
    row = await store.workspace_row(WS)
    assert row is not None
    assert (row.first_seen_at, row.last_seen_at) == (NOW, NOW + H)


async def test_running_since_is_cleared_on_stop_and_reset_on_the_next_run(store: Store) -> None:
    """Each running period starts its own clock."""
    await observe(store, NOW, running=None)
    assert (await memory_of(store)).running_since == NOW
    await observe(store, NOW + H, running=None)
    assert (await memory_of(store)).running_since == NOW
    await observe(store, NOW + 2 * H, state=State.STOPPED, running=None)
    assert (await memory_of(store)).running_since is None
    await observe(store, NOW + 3 * H, running=None)
    assert (await memory_of(store)).running_since == NOW + 3 * H


async def test_running_since_takes_the_platform_start_when_earlier(store: Store) -> None:
    """A workspace running before Warden first saw it has run since the platform says."""
    await observe(store, NOW, running=5 * H)
    assert (await memory_of(store)).running_since == NOW - 5 * H


async def test_a_platform_start_in_the_future_counts_from_now(store: Store) -> None:
    """A platform clock ahead of Warden's never makes a period start later than now."""
    await observe(store, NOW, started_at=NOW + M)
    assert (await memory_of(store)).running_since == NOW


async def test_a_restart_between_polls_starts_a_new_period(store: Store) -> None:
    """The platform's start moved forward: the old period's extensions are forgotten."""
    await observe(store, NOW, running=H)
    await act(store, "ext-1", Verb.EXTEND, policy="lifetime")
    await observe(store, NOW + 2 * H, running=10 * M)
    mem = await memory_of(store)
    assert (mem.running_since, mem.extensions_used) == (NOW + 110 * M, {})


async def test_an_unknown_state_keeps_the_running_period(store: Store) -> None:
    """`unknown` teaches nothing: it neither ends the period nor starts one."""
    await observe(store, NOW, running=H)
    await observe(store, NOW + M, state=State.UNKNOWN, running=None)
    await observe(store, NOW + 2 * M, running=H + 2 * M)
    assert (await memory_of(store)).running_since == NOW - H


async def test_a_new_running_period_forgets_extensions_and_wardens_stop(store: Store) -> None:
    """Once a workspace runs again, a later stop is not Warden's to undo."""
    await observe(store, NOW, running=H)
    await act(store, "ext-1", Verb.EXTEND, policy="lifetime")
    await act(store, "stop-1", Verb.STOP, policy="nights")
    await observe(store, NOW + H, state=State.STOPPED, running=None)
    assert (await memory_of(store)).stopped_by == "nights"
    await observe(store, NOW + 2 * H, running=M)
    mem = await memory_of(store)
    assert (mem.stopped_by, mem.stopped_at, mem.extensions_used) == (None, None, {})


async def test_ten_thousand_workspaces_in_one_observation(store: Store) -> None:
    """A large provider is recorded in one go, and a second poll updates every row."""
    seen = [workspace(f"ws-{i}", now=NOW, running=H) for i in range(10_000)]
    await store.record_observation(P, seen, NOW)
    later = [workspace(f"ws-{i}", now=NOW + M, state=State.STOPPED) for i in range(10_000)]
    await store.record_observation(P, later[:5_000] + seen[5_000:], NOW + M)
    memory = await store.load_memory(P)
    assert len(memory) == 10_000
    assert memory[WorkspaceId(P, "ws-0")].running_since is None
    assert memory[WorkspaceId(P, "ws-9999")].running_since == NOW - H
    assert len(await store.list_workspaces(P, state=State.STOPPED, limit=10_000)) == 5_000


async def test_the_last_snapshot_comes_back_as_a_workspace(store: Store) -> None:
    """`explain` rebuilds the snapshot exactly: times, Decimals, labels and facts."""
    seen = workspace(
        "ws-1",
        now=NOW,
        labels={"env": "dev"},
        utilisation={"cpu": Decimal("3.25"), "gpu": None},
        cost_units_per_day=Decimal("12.5"),
        deadline=NOW + H,
        facts={"build": 7},
    )
    await store.record_observation(P, [seen], NOW)
    row = await store.workspace_row(WS)
    assert row is not None
    assert snapshot_from_row(row) == seen


async def test_workspaces_are_listed_by_provider_and_state_a_page_at_a_time(store: Store) -> None:
    """The admin API's listing: filtered, ordered, paged."""
    await store.record_observation(
        P, [workspace(f"ws-{i}", now=NOW, state=State.RUNNING) for i in range(3)], NOW
    )
    await store.record_observation("b", [workspace("x", now=NOW, provider="b")], NOW)
    page = await store.list_workspaces(P, state="running", limit=2, offset=1)
    assert [r.id for r in page] == [WorkspaceId(P, "ws-1"), WorkspaceId(P, "ws-2")]
    assert len(await store.list_workspaces()) == 4
    assert await store.workspace_row(WorkspaceId(P, "missing")) is None


# ---------------------------------------------------------------- warnings and snoozes


async def test_warning_again_keeps_the_snoozes_used(store: Store) -> None:
    """A fresh warning cannot reset the snooze count to grant more snoozes."""
    await observe(store, NOW)
    await store.save_warning(WS, warning(), [])
    await store.snooze(WS, NOW + H, [])
    await store.save_warning(WS, warning(due=2 * H), [])
    assert await store.snooze_count(WS, "idle") == 1
    assert (await memory_of(store)).warnings["idle"].due_at == NOW + 2 * H


async def test_clearing_a_warning_keeps_the_others(store: Store) -> None:
    """Only the named policy's warning goes, with its event."""
    await store.save_warning(WS, warning("idle"), [])
    await store.save_warning(WS, warning("lifetime"), [])
    cleared = event("warden.workspace.warning_cleared")
    await store.clear_warning(WS, "idle", [cleared])
    assert set((await memory_of(store)).warnings) == {"lifetime"}
    assert await event_ids(store) == [cleared.id]


async def test_snoozing_an_unknown_workspace_changes_nothing(store: Store) -> None:
    """The admin API's 404: no row, no snooze, no event."""
    with pytest.raises(UnknownWorkspace):
        await store.snooze(WS, NOW + H, [event("warden.workspace.snoozed")])
    assert await event_ids(store) == []
    assert await store.snooze_count(WS, "idle") == 0


async def test_due_warnings_come_soonest_first_without_notifications(store: Store) -> None:
    """What exact-time jobs are rebuilt from after a restart."""
    other = WorkspaceId("b", "ws-2")
    await store.save_warning(WS, warning("idle", due=H), [])
    await store.save_warning(other, warning("idle", due=M), [])
    notified = Warning(policy="note", verb=Verb.NOTIFY, warned_at=NOW, due_at=NOW)
    await store.save_warning(WS, notified, [])
    assert await store.due_warnings() == [
        (other, warning("idle", due=M)),
        (WS, warning("idle", due=H)),
    ]
    assert await store.due_warnings(provider="b") == [(other, warning("idle", due=M))]


# ---------------------------------------------------------------- actions


async def test_a_successful_stop_records_who_stopped_it_and_resolves_its_warning(
    store: Store,
) -> None:
    """Warden will resume only what it stopped, so it remembers which policy did."""
    await observe(store, NOW)
    await store.save_warning(WS, warning("idle"), [])
    await store.save_warning(WS, warning("lifetime"), [])
    await act(store, "stop-1", Verb.STOP, policy="idle")
    mem = await memory_of(store)
    assert (mem.stopped_by, mem.stopped_at, set(mem.warnings)) == ("idle", NOW, {"lifetime"})


async def test_a_stop_is_remembered_even_before_any_poll_saw_the_workspace(store: Store) -> None:
    """Who stopped it must not be lost for want of a row."""
    await act(store, "stop-1", Verb.STOP, policy="nights")
    assert (await memory_of(store)).stopped_by == "nights"


async def test_a_successful_resume_forgets_wardens_stop(store: Store) -> None:
    """After resuming, Warden no longer claims the workspace's stop."""
    await observe(store, NOW)
    await act(store, "stop-1", Verb.STOP, policy="nights")
    await act(store, "resume-1", Verb.RESUME, policy="nights")
    mem = await memory_of(store)
    assert (mem.stopped_by, mem.stopped_at) == (None, None)


async def test_extensions_count_within_a_running_period(store: Store) -> None:
    """Each successful extension counts one, per policy."""
    await observe(store, NOW, running=H)
    await act(store, "ext-1", Verb.EXTEND, policy="lifetime")
    await act(store, "ext-2", Verb.EXTEND, policy="lifetime")
    await act(store, "ext-3", Verb.EXTEND, policy="other")
    assert (await memory_of(store)).extensions_used == {"lifetime": 2, "other": 1}


async def test_failed_and_dry_run_actions_change_no_memory(store: Store) -> None:
    """Only a real success makes Warden the one who stopped a workspace."""
    await observe(store, NOW)
    await act(store, "dry", Verb.STOP, dry_run=True)
    assert await begin(store, "real")
    await store.finish_action("real", outcome="failed", error="boom", now=NOW + M, events=[])
    assert (await memory_of(store)).stopped_by is None
    failed = await store.action(f"real#failed@{(NOW + M).isoformat()}")
    assert failed is not None
    assert (failed.outcome, failed.error, failed.finished_at) == (Outcome.FAILED, "boom", NOW + M)


async def test_a_failed_or_skipped_attempt_releases_its_key_for_a_later_try(store: Store) -> None:
    """A refusal or a fresh read that said no must not block the next cycle's attempt."""
    await observe(store, NOW)
    for outcome in ("failed", "skipped"):
        assert await begin(store, "stop-1")
        await store.finish_action("stop-1", outcome=outcome, error="no", now=NOW, events=[])
    assert await begin(store, "stop-1")
    await store.finish_action("stop-1", outcome="succeeded", error=None, now=NOW, events=[])
    assert not await begin(store, "stop-1")


async def test_an_action_is_finished_once(store: Store) -> None:
    """A second finish is refused, and does not count an extension twice."""
    await observe(store, NOW, running=H)
    await act(store, "ext-1", Verb.EXTEND, policy="lifetime")
    with pytest.raises(ActionNotPending, match="already succeeded"):
        await store.finish_action("ext-1", outcome="succeeded", error=None, now=NOW, events=[])
    assert (await memory_of(store)).extensions_used == {"lifetime": 1}


async def test_an_unknown_outcome_is_refused(store: Store) -> None:
    """Outcomes are a closed set; 'pending' is where actions start, not end."""
    await begin(store, "k")
    for outcome in ("done", "pending"):
        with pytest.raises(ValueError):  # noqa: PT011 — the message is Enum's own
            await store.finish_action("k", outcome=outcome, error=None, now=NOW, events=[])


async def test_pending_actions_are_those_a_crash_left_unfinished(open_store: Opener) -> None:
    """After a restart, recovery finds what was begun and never finished."""
    store = await open_store()
    for key in ("a", "b"):
        await begin(store, key, reason="idle 2h")
    await store.finish_action("a", outcome="succeeded", error=None, now=NOW, events=[])
    await store.aclose()
    pending = await (await open_store()).pending_actions()
    assert [(a.key, a.workspace, a.verb, a.reason, a.outcome) for a in pending] == [
        ("b", WS, Verb.STOP, "idle 2h", Outcome.PENDING)
    ]


# ---------------------------------------------------------------- decisions


async def test_decisions_come_back_newest_first_with_their_facts(store: Store) -> None:
    """`explain` shows the latest decisions and the facts behind each."""
    for i in range(3):
        decided = Decision(
            kind=DecisionKind.WARN,
            workspace=WS,
            policy="idle",
            verb=Verb.STOP,
            reason=f"idle {i}h",
            due_at=NOW + H + i * M,  # each a new decision (the same one again is kept once)
            facts={"idle_for": timedelta(hours=i), "cpu": Decimal("1.5")},
        )
        await store.record_decisions([decided], NOW + i * M, [])
    latest = await store.decisions_for(WS, limit=2)
    assert [d.reason for d in latest] == ["idle 2h", "idle 1h"]
    assert latest[0].facts == {"idle_for": 7200.0, "cpu": "1.5"}
    assert (latest[0].time, latest[0].due_at, latest[0].kind) == (
        NOW + 2 * M,
        NOW + H + 2 * M,
        "warn",
    )
    assert await store.prune_decisions(NOW + M) == 1
    assert len(await store.decisions_for(WS)) == 2


# ---------------------------------------------------------------- cycles and time


async def test_the_next_cycles_since_is_the_last_successful_cycle(store: Store) -> None:
    """A failed poll decided nothing, so edges it missed are still ahead."""
    assert await store.last_cycle(P) is None
    await store.mark_cycle(P, NOW, success=True)
    await store.mark_cycle(P, NOW + M, success=False)
    assert await store.last_cycle(P) == NOW
    await store.mark_cycle(P, NOW + 2 * M, success=True)
    assert await store.last_cycle(P) == NOW + 2 * M


async def test_times_come_back_as_aware_utc(store: Store) -> None:
    """An aware time in another zone is the same instant, read back in UTC."""
    berlin = timezone(timedelta(hours=1))
    await store.mark_cycle(P, NOW.astimezone(berlin), success=True)
    back = await store.last_cycle(P)
    assert back == NOW
    assert back is not None
    assert back.tzinfo is UTC


async def test_naive_times_are_refused(store: Store) -> None:
    """A naive datetime's meaning is a guess; the store does not guess."""
    with pytest.raises(StatementError, match="naive datetime"):
        await store.mark_cycle(P, datetime(2026, 1, 1), success=True)


# ---------------------------------------------------------------- the leader lease


async def test_one_holder_of_a_lease_until_it_expires(open_store: Opener) -> None:
    """The holder renews; another takes it only after expiry or release."""
    a, b = await open_store(), await open_store(migrate=False)
    ttl = timedelta(seconds=30)
    assert await a.try_acquire_lease("leader", "a", NOW, ttl)
    assert not await b.try_acquire_lease("leader", "b", NOW + 10 * timedelta(seconds=1), ttl)
    assert await a.try_acquire_lease("leader", "a", NOW + 20 * timedelta(seconds=1), ttl)
    assert not await b.try_acquire_lease("leader", "b", NOW + 40 * timedelta(seconds=1), ttl)
    assert await b.try_acquire_lease("leader", "b", NOW + 50 * timedelta(seconds=1), ttl)
    assert not await a.try_acquire_lease("leader", "a", NOW + 50 * timedelta(seconds=1), ttl)
    assert not await a.release_lease("leader", "a")
    assert await b.release_lease("leader", "b")
    assert await a.try_acquire_lease("leader", "a", NOW + 51 * timedelta(seconds=1), ttl)


async def test_the_epoch_rises_with_every_change_of_holder_and_never_falls(
    open_store: Opener,
) -> None:
    """A renewal keeps the epoch; a take-over, even after a release, raises it."""
    store = await open_store()
    ttl = timedelta(seconds=30)
    epochs = []
    for holder, at in [("a", 0), ("a", 10), ("b", 45), ("b", 50), ("a", 90)]:
        grant = await store.try_acquire_lease(
            "leader", holder, NOW + at * timedelta(seconds=1), ttl
        )
        assert grant is not None
        assert grant.holder == holder
        epochs.append(grant.epoch)
    assert await store.release_lease("leader", "a")
    grant = await store.try_acquire_lease("leader", "c", NOW + 91 * timedelta(seconds=1), ttl)
    assert grant is not None
    assert [*epochs, grant.epoch] == [1, 1, 2, 2, 3, 4]


async def test_a_fenced_write_of_an_old_epoch_writes_nothing(open_store: Opener) -> None:
    """The old holder's view of the store refuses every write once the lease moved on."""
    store = await open_store()
    ttl = timedelta(seconds=30)
    grant = await store.try_acquire_lease("leader", "a", NOW, ttl)
    assert grant is not None
    old = store.with_fence(Fence("leader", "a", grant.epoch))
    event = Event(id="before", type="t", subject="s", time=NOW)
    await old.add_events([event])  # still the holder: written
    assert await store.try_acquire_lease("leader", "b", NOW + ttl, ttl)
    with pytest.raises(Fenced, match="held by b at epoch 2"):
        await old.add_events([Event(id="after", type="t", subject="s", time=NOW)])
    with pytest.raises(Fenced):
        await old.begin_action(
            key="k",
            ws=WS,
            policy="p",
            verb=Verb.STOP,
            reason="r",
            now=NOW,
            dry_run=False,
            events=[],
        )
    assert [e.id for e in await store.events_after(0)] == ["before"]
    assert await store.pending_actions() == []


async def test_a_commit_that_wrote_events_tells_the_listeners(open_store: Opener) -> None:
    """Every view of the store tells its listeners after a commit with events, only then."""
    store = await open_store()
    told: list[str] = []
    store.on_events_written(lambda: told.append("wake"))
    await store.mark_cycle(P, NOW, success=True)  # no events
    assert told == []
    await store.with_fence(None).add_events([Event(id="e1", type="t", subject="s", time=NOW)])
    assert told == ["wake"]

    async def rolled_back() -> None:
        async with store.write() as conn:
            await store.outbox(conn, [Event(id="e2", type="t", subject="s", time=NOW)])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await rolled_back()
    assert told == ["wake"]  # a rolled-back transaction wakes no one


# ---------------------------------------------------------------- SQLite specifics


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    """WAL lets `warden explain` read while the daemon writes."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'w.sqlite'}")
    try:
        async with store._engine.connect() as conn:  # a look inside, for this check only
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await store.aclose()
    assert (mode, timeout) == ("wal", 10_000)


async def test_sqlite_writers_in_one_process_wait_for_each_other(tmp_path: Path) -> None:
    """Concurrent read-then-write transactions queue instead of failing as locked."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.sqlite'}"
    one, two = await Store.open(url), await Store.open(url)
    try:
        await one.migrate()
        await asyncio.gather(
            *(
                (one if i % 2 else two).record_observation(P, [workspace(f"ws-{i}", now=NOW)], NOW)
                for i in range(20)
            )
        )
        assert len(await one.list_workspaces()) == 20
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_sqlite_file_in_a_missing_directory_fails_at_open(tmp_path: Path) -> None:
    """A store that cannot be opened says so at start, not at the first cycle."""
    with pytest.raises(StoreUnavailable, match="no directory"):
        await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'w.sqlite'}")


async def test_an_unreachable_server_fails_at_open_without_its_password() -> None:
    """A refused connection is StoreUnavailable, and the message keeps the URL's secret."""
    with pytest.raises(StoreUnavailable, match="cannot open the postgresql") as caught:
        await Store.open("postgresql://warden:s3cret@127.0.0.1:1/warden")
    assert "s3cret" not in str(caught.value)


def test_an_unsupported_database_is_refused() -> None:
    """Only SQLite and PostgreSQL are supported."""
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        create_engine("mysql://localhost/warden")


async def test_utilisation_samples_are_kept_across_polls_and_unknowns_stay_unknown(
    store: Store,
) -> None:
    """Each poll adds a sample per metric; None is kept as a gap; old samples are pruned."""
    from decimal import Decimal

    for minute, gpu in enumerate([Decimal("2.5"), None, Decimal(0)]):
        at = NOW + minute * M
        ws = workspace("ws-1", now=at, utilisation={"gpu": gpu})
        await store.record_observation(P, [ws], at)
    memory = await store.load_memory(P, samples_since=NOW)
    assert memory[WorkspaceId(P, "ws-1")].samples == {
        "gpu": [(NOW, Decimal("2.5")), (NOW + M, None), (NOW + 2 * M, Decimal(0))]
    }
    assert (await store.load_memory(P))[WorkspaceId(P, "ws-1")].samples == {}
    later = NOW + 26 * H  # the next sample prunes those past the retention
    ws = workspace("ws-1", now=later, utilisation={"gpu": Decimal(1)})
    await store.record_observation(P, [ws], later)
    assert (await store.load_memory(P, samples_since=NOW))[WorkspaceId(P, "ws-1")].samples == {
        "gpu": [(later, Decimal(1))]
    }


# ---------------------------------------------------------------- budgets


async def test_the_ledger_keeps_days_per_zone_and_sums_a_window_in_one(store: Store) -> None:
    from datetime import date

    from warden.spend.accrual import Accrual, Entry, Point

    ws = WorkspaceId("coder", "ws-1")
    entries = [
        Entry(date(2026, 11, 24), Decimal("1.5"), False, "UTC"),
        Entry(date(2026, 11, 24), Decimal("1.0"), False, "Europe/Berlin"),
        Entry(date(2026, 11, 25), Decimal("0.5"), True, "Europe/Berlin"),
    ]
    point = Point(NOW, True, Decimal(1))
    await store.account_spend("coder", [Accrual(ws, "alice", point, entries, False)], [])
    await store.account_spend("coder", [Accrual(ws, "alice", point, entries[1:2], False)], [])
    [berlin] = await store.spend_between(date(2026, 11, 24), date(2026, 11, 25), "Europe/Berlin")
    assert (berlin.ws, berlin.owner, berlin.amount, berlin.estimated) == (
        ws,
        "alice",
        Decimal("2.5"),
        Decimal("0.5"),
    )
    [utc] = await store.spend_by_day(date(2026, 11, 24))
    assert utc.amount == Decimal("1.5")
    assert await store.spend_rates() == {ws: Decimal(1)}


async def test_budget_windows_round_trip_and_are_found_open_or_pending(store: Store) -> None:
    from warden.budget.state import Acted, WindowState

    agents = WorkspaceId("agents", "w-1")
    replaced = {"workspace": "w-1", "previous": {"daily_budget_usd": "100.5"}, "applied": {}}
    state = WindowState(
        budget="org-daily",
        scope="all",
        window_start=NOW - timedelta(hours=10),
        window_end=NOW + timedelta(hours=14),
        fired=(0, 2),
        acted=(Acted(agents, Verb.THROTTLE, replaced),),
    )
    await store.save_budget_windows([state])
    assert await store.budget_windows(open_at=NOW) == [state]
    assert await store.budget_windows(open_at=NOW + timedelta(days=1)) == []
    assert await store.budget_windows(open_at=NOW + timedelta(days=1), pending_undo=True) == [state]
    done = state.without({(agents, Verb.THROTTLE)})
    await store.save_budget_windows([done])
    assert await store.budget_windows(open_at=NOW + timedelta(days=1), pending_undo=True) == []
    assert (await store.budget_windows(open_at=NOW))[0].undone is True


async def test_shard_leases_are_claimed_once_each_and_their_epochs_rise(open_store: Opener) -> None:
    """Free shards go to the first claimer; a held one is not claimed; a lapsed one is,
    with its epoch one higher; a gone replica's presence row is pruned."""
    store = await open_store()
    ttl = timedelta(seconds=30)
    names = ["shard:a", "shard:b", "shard:c"]
    first = await store.claim_leases(names, "r1", NOW, ttl, limit=2)
    second = await store.claim_leases(names, "r2", NOW, ttl, limit=2)
    assert sorted(g.name for g in first) == ["shard:a", "shard:b"]
    assert [(g.name, g.holder, g.epoch) for g in second] == [("shard:c", "r2", 1)]
    assert await store.try_acquire_lease("shard:c", "r2", NOW + ttl, ttl)  # r2 renews
    later = NOW + 1.5 * ttl  # r1 stopped renewing: its two lapsed
    third = await store.claim_leases(names, "r2", later, ttl, limit=5)
    assert sorted((g.name, g.epoch) for g in third) == [("shard:a", 2), ("shard:b", 2)]
    assert await store.try_acquire_lease("replica:r1", "r1", NOW, ttl)
    assert await store.prune_leases("replica:", later) == 1
    assert {g.name for g in await store.leases()} == set(names)
