"""The budgets' part of a cycle: review spend against every budget, then remember
what the cycle's budget actions did. The only budget code that touches the store.

`review` reads the ledger (in each budget's time zone), the latest snapshots and the
current burn rates, finds the thresholds that fire for the first time in their
window, and saves them with their events in one transaction, before any action: a
crash after it cannot fire them twice. `remember` records what the actuator did for
a budget (to undo at the reset) and, when a window's undo is complete, says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import structlog

from warden.actuator import CycleOutcome
from warden.budget.enforce import budget_facts, percent_text
from warden.budget.evaluate import (
    HUNDRED,
    Charge,
    Standing,
    observed_by_scope,
    scope_of,
    standings,
)
from warden.budget.freshness import fed_sources, freshness_of
from warden.budget.state import Acted, WindowKey, WindowState
from warden.budget.windows import window_at
from warden.events import catalogue as ev
from warden.model import Decision, Event, Verb, Workspace, WorkspaceId
from warden.policy.models import BudgetPolicy
from warden.policy.selector import covers
from warden.providers.base import Observation
from warden.spend.accrual import LEDGER_ZONE
from warden.spend.feeds import SpendRecord
from warden.store import Store
from warden.store.rows import RunningSpan

log = structlog.get_logger(__name__)

UNDOES = {Verb.RESUME: Verb.STOP, Verb.RELEASE: Verb.KILL_SWITCH, Verb.RESTORE: Verb.THROTTLE}
BUDGETS_LOCK = "budgets"  # budget windows are read, changed and written whole: one at a time
FEED_BURN = timedelta(hours=1)  # fed spend this recent counts as the scope's hourly burn
FEED_WHOLE_PROVIDER = "-"  # the workspace of a fed record that names none
Settled = tuple[WindowKey, Acted]  # an action with nothing left to undo


@dataclass(slots=True)
class Review:
    """Every budget's standing now, and the ended windows with something to undo."""

    standings: list[Standing] = field(default_factory=list)
    ended: list[WindowState] = field(default_factory=list)
    states: dict[WindowKey, WindowState] = field(default_factory=dict)


def ledger_zones(budgets: Iterable[BudgetPolicy]) -> tuple[str, ...]:
    """The time zones the ledger keeps days in: UTC, and each budget's."""
    return (LEDGER_ZONE, *sorted({b.budget.timezone for b in budgets} - {LEDGER_ZONE}))


class BudgetKeeper:
    """Reviews and remembers budget windows, one provider's cycle at a time.

    Providers' cycles run concurrently, on one replica or on several (each provider's
    shard may be held by another), but a window's state is read, changed and written
    back whole: the lock (in the process, and across replicas `store.exclusive`, a
    PostgreSQL advisory lock) makes each review and each remember atomic, so that two
    cycles can neither fire one threshold twice nor lose each other's actions.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = anyio.Lock()

    async def review(
        self,
        budgets: Sequence[BudgetPolicy],
        *,
        now: datetime,
        observed: Observation | None = None,
        store: Store | None = None,
        save: bool = True,
    ) -> Review:
        """Where every budget stands; newly fired thresholds are saved and told.

        `observed` is the cycle's own listing: its snapshots are used as they are, and
        only the other providers' are read from the store.
        """
        if not budgets:
            return Review()
        async with self._lock, self._store.exclusive(BUDGETS_LOCK):
            return await self._review(budgets, now, observed, store or self._store, save)

    async def _review(
        self,
        budgets: Sequence[BudgetPolicy],
        now: datetime,
        observed: Observation | None,
        store: Store,
        save: bool,
    ) -> Review:
        review = Review()
        known = await self._store.budget_windows(open_at=now, pending_undo=True)
        review.states = {s.key: s for s in known}
        snapshots = await self._store.snapshots(
            besides=observed.provider if observed is not None else None
        )
        if observed is not None:
            snapshots.update((ws.id, ws) for ws in observed.workspaces)
        polled = {observed.provider: observed.observed_at} if observed is not None else {}
        review.standings = await self._evaluate(budgets, review.states, snapshots, now, polled)
        changed: list[WindowState] = []
        events: list[Event] = []
        for standing in review.standings:
            if standing.fired:
                state = _state_of(standing).firing(standing.fired)
                review.states[state.key] = state
                changed.append(state)
                events.extend(_crossed(standing, i, now) for i in standing.fired)
        changed.extend(self._settle_quiet_ends(review, now, events))
        review.ended = [s for s in review.states.values() if s.window_end <= now and not s.undone]
        if changed and save:  # `warden plan` sees what would fire, and writes nothing
            await store.save_budget_windows(changed, events)
            log.info("budget.thresholds_fired", count=len(events))
        return review

    async def explain(
        self, ws: Workspace, budgets: Sequence[BudgetPolicy], *, now: datetime
    ) -> list[dict[str, Any]]:
        """The budgets `ws` counts toward, and how close each is, for `warden explain`."""
        counted = [b for b in budgets if covers(b, ws) and scope_of(b.budget.per, ws) is not None]
        return [
            standing_json(standing, now) | {"workspace_spent": str(_spent_by(standing, ws))}
            for standing in await self.current(counted, now=now)
            if standing.scope == scope_of(standing.budget.budget.per, ws)
        ]

    async def overview(
        self, budgets: Sequence[BudgetPolicy], *, now: datetime
    ) -> list[dict[str, Any]]:
        """Every budget's scope values with spend or burn now, for the admin API."""
        return [standing_json(s, now) for s in await self.current(budgets, now=now)]

    async def current(self, budgets: Sequence[BudgetPolicy], *, now: datetime) -> list[Standing]:
        """Where `budgets` stand now, as the last review saved them; reads, never writes."""
        if not budgets:
            return []
        states = {s.key: s for s in await self._store.budget_windows(open_at=now)}
        return await self._evaluate(budgets, states, await self._store.snapshots(), now)

    async def _evaluate(
        self,
        budgets: Sequence[BudgetPolicy],
        states: Mapping[WindowKey, WindowState],
        snapshots: Mapping[WorkspaceId, Workspace],
        now: datetime,
        polled: Mapping[str, datetime] | None = None,
    ) -> list[Standing]:
        """Every budget's standings in its current window, against the stored states,
        each with how fresh its facts are (`polled`: a cycle's own poll, not yet stored)."""
        spans = await self._store.running_spans(polled)  # read once, for every budget
        points = await self._store.running_points(spans=spans)
        rates = {ws: p.per_hour for ws, p in points.items() if p.per_hour is not None}
        polls = await self._store.last_polls() | dict(polled or {})
        feeds = await self._store.spend_sources()
        found: list[Standing] = []
        for budget in budgets:
            current = self._current_states(states, budget, now)
            charges = await self._charges(budget, now, spans)
            observed = observed_by_scope(budget, snapshots, points, polls)
            fed = fed_sources(budget, feeds)
            found.extend(
                replace(s, freshness=freshness_of(observed.get(s.scope, {}), fed))
                for s in standings(budget, charges, snapshots, rates, current, now=now)
            )
        return found

    async def _charges(
        self, budget: BudgetPolicy, now: datetime, spans: Sequence[RunningSpan]
    ) -> list[Charge]:
        """The window's spend: the ledger's local days with the open `spans` up to now,
        and the fed records in it."""
        window = window_at(budget.budget.window, budget.budget.timezone, now)
        zone = budget.budget.timezone
        rows = await self._store.spend_between(
            window.first_day, window.last_day, zone, until=now, spans=spans
        )
        # Records up to and including now; one dated later counts when its time comes.
        until = min(window.end, now + timedelta(microseconds=1))
        records = await self._store.spend_records_between(window.start, until)
        return [Charge(r.ws, r.owner, r.amount) for r in rows] + [
            _fed(record, recent=record.at >= now - FEED_BURN) for record in records
        ]

    @staticmethod
    def _current_states(
        states: Mapping[WindowKey, WindowState], budget: BudgetPolicy, now: datetime
    ) -> dict[str, WindowState]:
        return {
            s.scope: s
            for s in states.values()
            if s.budget == budget.name and s.window_start <= now < s.window_end
        }

    @staticmethod
    def _settle_quiet_ends(review: Review, now: datetime, events: list[Event]) -> list[WindowState]:
        """Ended windows with nothing to undo are settled at once, and their reset told."""
        settled = []
        for key, state in list(review.states.items()):
            if state.window_end <= now and not state.undone and not state.acted:
                done = state.without(set())
                review.states[key] = done
                settled.append(done)
                events.append(_reset(done, undone=[], now=now))
        return settled

    async def remember(
        self,
        outcome: CycleOutcome,
        settled: Sequence[Settled],
        budgets: Mapping[str, BudgetPolicy],
        *,
        now: datetime,
        store: Store | None = None,
    ) -> None:
        """Record the budgets' actions that succeeded (and undos), in one transaction."""
        if not budgets or not (outcome.done or settled):
            return
        async with self._lock, self._store.exclusive(BUDGETS_LOCK):
            await self._remember(outcome, settled, budgets, now, store or self._store)

    async def _remember(
        self,
        outcome: CycleOutcome,
        settled: Sequence[Settled],
        budgets: Mapping[str, BudgetPolicy],
        now: datetime,
        store: Store,
    ) -> None:
        # Read again: another provider's cycle may have changed a window since review.
        known = await self._store.budget_windows(open_at=now, pending_undo=True)
        stored = {s.key: s for s in known}
        touched: dict[WindowKey, WindowState] = {}
        undone: dict[WindowKey, list[str]] = {}

        def state(key: WindowKey) -> WindowState | None:
            return touched.get(key) or stored.get(key)

        for decision in outcome.done:
            if decision.policy not in budgets:
                continue
            key = _key_of(decision)
            current = state(key)
            if current is None:
                continue
            if decision.verb in UNDOES:
                gone = {(decision.workspace, UNDOES[decision.verb])}
                touched[key] = current.without(gone)
                undone.setdefault(key, []).append(str(decision.workspace))
            elif decision.verb in (Verb.STOP, Verb.KILL_SWITCH, Verb.THROTTLE):
                replaced = outcome.replaced.get(decision.workspace)
                acted = Acted(decision.workspace, decision.verb, replaced)
                touched[key] = current.acting((acted,))
        for key, acted in settled:
            current = state(key)
            if current is not None:
                touched[key] = current.without({(acted.workspace, acted.verb)})
        events = [
            _reset(s, undone=undone.get(k, []), now=now)
            for k, s in touched.items()
            if s.undone and s.window_end <= now
        ]
        if touched:
            await store.save_budget_windows(list(touched.values()), events)


def _spent_by(standing: Standing, ws: Workspace) -> Decimal:
    return dict(standing.spenders).get(ws.id, Decimal(0))


def standing_json(standing: Standing, now: datetime) -> dict[str, Any]:
    """One budget's scope value now: spend, share, burn, projection, thresholds fired.

    What fired is what the store holds (the last review), not what would fire now.
    """
    fired = standing.state.fired if standing.state else ()
    return (
        budget_facts(standing)
        | {
            "percent": percent_text(standing),
            "burn_per_hour": str(standing.burn_per_hour),
            "projected": str(standing.projected(now).quantize(Decimal("0.01"))),
            "thresholds": [
                {"at": f"{t.at}%", "forecast": t.forecast, "do": t.do, "fired": i in fired}
                for i, t in enumerate(standing.budget.thresholds)
            ],
        }
        | standing.freshness.json(now)
    )


def _fed(record: SpendRecord, *, recent: bool) -> Charge:
    """A fed record as a charge: its workspace ("-" for the provider as a whole), and
    the person it names (else the workspace's owner)."""
    ws = WorkspaceId(record.provider, record.workspace or FEED_WHOLE_PROVIDER)
    return Charge(ws, "", record.amount, person=record.owner, burn=recent)


def _key_of(decision: Decision) -> WindowKey:
    facts = decision.facts
    return (
        decision.policy,
        str(facts["scope"]),
        datetime.fromisoformat(str(facts["window_start"])),
    )


def _state_of(standing: Standing) -> WindowState:
    return standing.state or WindowState(
        budget=standing.budget.name,
        scope=standing.scope,
        window_start=standing.window.start,
        window_end=standing.window.end,
    )


def _crossed(standing: Standing, index: int, now: datetime) -> Event:
    threshold = standing.budget.thresholds[index]
    acts = threshold.do != "notify"
    data = (
        budget_facts(standing)
        | {
            "policy": standing.budget.name,
            "threshold": index,
            "at": f"{threshold.at}%",
            "percent": percent_text(standing),
            "forecast": threshold.forecast,
            "projected": str(standing.projected(now).quantize(Decimal("0.000001"))),
            "action": threshold.do,
            "notify": list(threshold.notify),
        }
        | standing.freshness.json(now)
    )
    severity = "critical" if acts or threshold.at >= HUNDRED else "warning"
    return ev.new_event(
        ev.BUDGET_THRESHOLD_CROSSED,
        f"budgets/{standing.budget.name}/{standing.scope}",
        now=now,
        data=data,
        severity=severity,
    )


def _reset(state: WindowState, *, undone: list[str], now: datetime) -> Event:
    return ev.new_event(
        ev.BUDGET_WINDOW_RESET,
        f"budgets/{state.budget}/{state.scope}",
        now=now,
        data={
            "policy": state.budget,
            "budget": state.budget,
            "scope": state.scope,
            "window_start": state.window_start.isoformat(),
            "window_end": state.window_end.isoformat(),
            "fired": list(state.fired),
            "undo": undone,
        },
    )


__all__ = ["BudgetKeeper", "Review", "Settled", "ledger_zones"]
