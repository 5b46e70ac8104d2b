"""One cycle of one provider, the one pipeline `warden run` and `warden plan` share.

    observe ─► recover ─► remember ─► decide ─► rails ─► act ─► tell

- observe: list the provider's workspaces. An unreadable platform is an outage (told
  once until it ends); a Retry-After hold skips the poll quietly; unreadable pages and
  workspaces are left alone, counted, and told once while they last.
- recover: actions a crash left pending are settled by reading the workspace again:
  done there → finished (event and memory); still due → sent again under the same
  key; moot → abandoned. A pending action never blocks a workspace for good.
- remember: the observation and its spend are written, then the memory is loaded, once.
- decide: policies and budgets together, pure (`decide_cycle`): the only place that
  decides what should happen.
- rails: whether each action may happen now (`warden.rails`), pure, with its inputs
  loaded once.
- act: the actuator journals, re-reads, checks the lease and performs.
- tell: budgets remember, backoffs move, metrics, the cycle marker, the next due time.

Every write of a `run` cycle goes through the store's fenced view: a replica that lost
its lease writes nothing, and stops acting at once (`Fenced`, `LeaseLapsed`). `plan`
runs the same stages with writes off: it observes, loads the memory and decides as a
run would, shows what the rails would hold, and writes nothing, calls no mutation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from warden.actuator import DISRUPTIVE, Actuator, Cycle, CycleOutcome
from warden.budget.enforce import combine, enforcement, undo
from warden.budget.keeper import BudgetKeeper, Review, Settled, ledger_zones
from warden.clock import monotonic
from warden.errors import ProviderError, ProviderUnavailable, WorkspaceGone
from warden.events import catalogue as ev
from warden.leadership import Leadership, LeaseLapsed
from warden.metrics import Metrics
from warden.model import (
    EMPTY_MEMORY,
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
from warden.policy.decide import (
    Rules,
    decide,
    due_times,
    effect_seen,
    kill_switch_names,
    sample_window,
    still_stands,
)
from warden.policy.loader import PolicySet
from warden.policy.selector import server_filter
from warden.providers.base import Capability, ListFilter, Observation, Provider, Skipped
from warden.rails import Announced, RailInputs, RailsResult, Router, announcement, apply_rails
from warden.retry import ACTIONS
from warden.spend.cycle import accruals_for
from warden.store import Store, deliveries
from warden.store import episodes as ep
from warden.store.lease import Fenced
from warden.store.rows import ActionRecord, CycleState, Outcome

log = structlog.get_logger(__name__)

SPEND_GAP_LIMIT = timedelta(minutes=10)  # longer unobserved stretches accrue as estimated
USUAL_WINDOW = timedelta(days=7)  # a policy's usual share: the most it did in a cycle lately
DELIVERY_RECHECK = timedelta(seconds=1)  # an action waiting for its warning asks again
DUE_SLACK = timedelta(seconds=0.5)  # a due cycle takes what falls due this soon, too


@dataclass(slots=True)
class ProviderStatus:
    """What the daemon knows of one provider's health, for /readyz and metrics."""

    last_success_at: datetime | None = None
    last_error: str | None = None
    workspaces: int = 0
    skipped: int = 0
    unreachable: bool = False
    unread_pages: int = 0
    slowed_since: datetime | None = None  # asked to slow down (429, Retry-After) since


class Phases:
    """How long each stage of a cycle took, for its log line and the benchmark."""

    def __init__(self) -> None:
        self._last = monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = monotonic()
        self.seconds[phase] = round(now - self._last, 4)
        self._last = now


@dataclass(slots=True)
class CycleResult:
    """One provider's cycle: what was seen, decided and done."""

    provider: str
    observation: Observation | None
    decisions: list[Decision] = field(default_factory=list)
    outcome: CycleOutcome = field(default_factory=CycleOutcome)
    error: str | None = None
    next_due: datetime | None = None  # when a decision changes without new facts
    review: Review | None = None  # where the budgets stood, and what fired this cycle
    standby: bool = False  # another replica leads: this one only watched
    seconds: dict[str, float] = field(default_factory=dict)  # by phase: list, remember, ...
    recovered: list[tuple[ActionRecord, str]] = field(default_factory=list)


class Pipeline:
    """The stages of a cycle, with what they share: store, actuator, budgets, lease."""

    def __init__(
        self,
        store: Store,
        *,
        policies: PolicySet,
        actuator: Actuator,
        budgets: BudgetKeeper,
        leases: Callable[[str], Leadership],
        metrics: Metrics,
        router: Callable[[], Router | None] = lambda: None,
        dry_run: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.actuator = actuator
        self.budgets = budgets
        self.lease = leases  # the lease of a provider's shard: its cycles' fence
        self.metrics = metrics
        self._router = router
        self._dry_run = dry_run
        self.status: dict[str, ProviderStatus] = {}
        # Per provider: when each workspace's decision changes without new facts.
        self.due: dict[str, dict[WorkspaceId, datetime]] = {}
        self.configure(policies)

    def configure(self, policies: PolicySet) -> None:
        """Use a (re)loaded policy set from the next cycle on."""
        self.policies = policies
        self.rules = Rules(policies.policies, policies.schedules, policies.settings)
        for name in policies.providers:
            self.status.setdefault(name, ProviderStatus())

    # ------------------------------------------------------------ the whole cycle

    async def run(
        self, provider: Provider, now: datetime, *, writes: bool = True, due: bool = False
    ) -> CycleResult:
        """One cycle of `provider` at `now`; with `writes` off, the plan of one. With
        `due`, only the workspaces falling due now are read again and decided (a due
        cycle: a few requests, whatever the fleet's size), not the whole listing."""
        name = provider.name
        if not writes:
            return await self._cycle(provider, self.store, now, writes=False)
        lease = self.lease(name)
        fence = await lease.ensure(now, take=False)
        if fence is None:
            self._watched(name)
            return CycleResult(name, None, standby=True)
        try:
            store = self.store.with_fence(fence)
            if due:
                return await self._due_cycle(provider, store, now)
            return await self._cycle(provider, store, now, writes=True)
        except (Fenced, LeaseLapsed) as e:
            lease.fenced(str(e))
            await self._tell_fenced(lease, now)
            return CycleResult(name, None, error=str(e))

    async def _cycle(
        self, provider: Provider, store: Store, now: datetime, *, writes: bool
    ) -> CycleResult:
        name, phases = provider.name, Phases()
        state = await store.cycle_state(name)
        observation = await self.observe(provider, store, state, now, writes=writes)
        if observation is None:
            return CycleResult(name, None, error=self.status[name].last_error)
        phases.mark("list")
        memory = await self.remember(name, store, observation, state, now, writes=writes)
        recovered = await self.recover(provider, store, memory, state, now) if writes else []
        phases.mark("remember")
        review = await self.budgets.review(
            self.policies.budgets, now=now, observed=observation, store=store, save=writes
        )
        decisions, settled = self.decide(provider, observation, memory, review, state, now)
        inputs = await self.rail_inputs(provider, store, state, observation, decisions, memory, now)
        railed = apply_rails(decisions, inputs, self.rules.settings, memory, now=now)
        phases.mark("decide")
        result = CycleResult(name, observation, decisions, review=review, recovered=recovered)
        result.seconds = phases.seconds
        if not writes:
            result.outcome = _planned(railed)
            return result
        result.outcome = await self.act(
            provider, store, observation, memory, railed, inputs, state, now
        )
        phases.mark("act")
        await self.tell(
            provider, store, observation, decisions, result.outcome, settled, inputs, now
        )
        result.next_due = self._keep_due(name, observation, memory, result.outcome, railed, now)
        phases.mark("tell")
        log.info(
            "cycle.finished",
            workspaces=len(observation.workspaces),
            skipped=len(observation.skipped),
            decisions=len(decisions),
            acted=len(result.outcome.done),
            requests=observation.requests,
            seconds=phases.seconds,
        )
        return result

    async def _due_cycle(self, provider: Provider, store: Store, now: datetime) -> CycleResult:
        """Read again only what falls due now, decide and act on it: the exact-time
        cycle between polls. It moves no `since` and judges no listing; budgets are
        reviewed at the polls."""
        name, phases = provider.name, Phases()
        due = self.due.setdefault(name, {})
        ids = sorted(ws for ws, at in due.items() if at <= now + DUE_SLACK)
        if not ids:
            return CycleResult(name, None, next_due=min(due.values(), default=None))
        state = await store.cycle_state(name)
        observation = await self._read_again(provider, ids, now)
        phases.mark("list")
        natives = [ws.native for ws in ids]
        await store.record_observation(name, observation.workspaces, now)
        window = sample_window(self.rules)
        since = now - window if window else None
        memory = await store.load_memory(name, samples_since=since, only=natives)
        phases.mark("remember")
        decisions, _settled = self.decide(provider, observation, memory, Review(), state, now)
        inputs = await self.rail_inputs(provider, store, state, observation, decisions, memory, now)
        railed = apply_rails(decisions, inputs, self.rules.settings, memory, now=now)
        phases.mark("decide")
        outcome = await self.act(provider, store, observation, memory, railed, inputs, state, now)
        phases.mark("act")
        await self._move_backoffs(store, decisions, outcome, inputs, now, among=set(ids))
        self._count_actions(outcome, now)
        for ws in ids:
            due.pop(ws, None)
        next_due = self._keep_due(name, observation, memory, outcome, railed, now, merge=True)
        phases.mark("tell")
        log.info(
            "cycle.due",
            workspaces=len(observation.workspaces),
            decisions=len(decisions),
            acted=len(outcome.done),
            seconds=phases.seconds,
        )
        result = CycleResult(name, observation, decisions, outcome, next_due=next_due)
        result.seconds = phases.seconds
        return result

    async def _read_again(
        self, provider: Provider, ids: Sequence[WorkspaceId], now: datetime
    ) -> Observation:
        """Each workspace read on its own; one that cannot be read is left for the poll."""
        found: list[Workspace] = []
        skipped: list[Skipped] = []

        async def read(ws: WorkspaceId) -> None:
            try:
                found.append(await provider.refresh(ws.native, now=now))
            except ProviderError as e:  # a gone or unreadable workspace waits for the poll
                skipped.append(Skipped(ws.native, f"read again when due: {e}"))

        async with anyio.create_task_group() as tg:
            for ws in ids:
                tg.start_soon(read, ws)
        found.sort(key=lambda w: w.id)
        return Observation(provider.name, now, found, skipped, requests=len(ids), complete=False)

    # ------------------------------------------------------------ observe

    async def observe(
        self, provider: Provider, store: Store, state: CycleState, now: datetime, *, writes: bool
    ) -> Observation | None:
        """A listing (whole or partial), or None when nothing could be read."""
        name, status = provider.name, self.status.setdefault(provider.name, ProviderStatus())
        started = monotonic()
        try:
            observation = await provider.observe(now=now, filter=self._listing_filter(name))
        except ProviderError as e:
            self.metrics.poll_finished(name, seconds=monotonic() - started, ok=False)
            self.metrics.api_error(name, e.status)
            status.last_error = str(e)
            if writes:
                await self._unreadable(name, store, state, e, now)
            return None
        self.metrics.poll_finished(name, seconds=monotonic() - started, ok=True)
        self.metrics.workspaces_seen(name, Counter(str(ws.state) for ws in observation.workspaces))
        if writes:
            await self._told_rejections(name, store, observation, now)
        status.last_error, status.slowed_since = None, None
        status.last_success_at = now
        status.workspaces, status.skipped = len(observation.workspaces), len(observation.skipped)
        status.unread_pages = _unread_pages(observation)
        return observation

    async def _unreadable(
        self, name: str, store: Store, state: CycleState, error: ProviderError, now: datetime
    ) -> None:
        """A poll that read nothing: an outage, told when it begins. A platform that asks
        us to slow down (429, or a Retry-After hold not yet over) is up: that is quiet
        until the facts grow older than `max_staleness`."""
        status = self.status[name]
        slowed = isinstance(error, ProviderUnavailable) and (error.held or error.status == 429)
        status.slowed_since = (status.slowed_since or now) if slowed else None
        last = state.last_complete_at or state.last_success_at or status.slowed_since
        stale = last is None or now - last > self.rules.settings.max_staleness
        if slowed and not stale:
            await store.mark_cycle(name, now, success=False)
            log.info("poll.held", error=str(error))
            return
        events = []
        if state.unreachable_since is None:
            events.append(_unreachable(name, str(error), now))
        status.unreachable = True
        await store.mark_cycle(name, now, success=False, events=events, unreachable=True)
        log.warning("poll.failed", error=str(error))

    async def _told_rejections(
        self, name: str, store: Store, observation: Observation, now: datetime
    ) -> None:
        """Each refused answer (a workspace, a page) is told when its episode begins."""
        current = {_subject(s.native_id, s.reason): s for s in observation.skipped}
        known = await ep.rejections(store, name)
        begun = {subject: s.reason for subject, s in current.items() if subject not in known}
        ended = [subject for subject in known if subject not in current]
        for subject in begun:
            log.warning("workspace.skipped", subject=subject, reason=begun[subject])
        if begun or ended:
            events = [
                _rejected(name, current[subject].native_id, reason, now, observation)
                for subject, reason in begun.items()
            ]
            await ep.update_rejections(
                store, name, begun=begun, ended=ended, now=now, events=events
            )

    def _listing_filter(self, name: str) -> ListFilter | None:
        """Narrow the listing to what the policies can match, unless its spend counts."""
        if name in self.policies.pricing:
            return None  # every running workspace costs money, matched by a policy or not
        return server_filter(self.rules.policies, name)

    def _watched(self, name: str) -> None:
        """A standby's cycle: it reads nothing, but it has looked (for readiness)."""
        status = self.status.setdefault(name, ProviderStatus())
        status.last_error = status.last_error or "standby: another replica leads"

    # ------------------------------------------------------------ remember

    async def remember(
        self,
        name: str,
        store: Store,
        observation: Observation,
        state: CycleState,
        now: datetime,
        *,
        writes: bool,
    ) -> dict[WorkspaceId, Memory]:
        """Write what was seen (and what it cost), then read the memory, once."""
        if writes:
            listed = await store.record_observation(name, observation.workspaces, now, listing=True)
            # Those the listing before showed were seen then: `since` is that listing.
            last_listing = state.last_success_at
            await self._account(
                name,
                store,
                observation,
                now,
                seen_at=lambda ws: last_listing if ws.native in listed else None,
            )
        window = sample_window(self.rules)
        return await store.load_memory(name, samples_since=now - window if window else None)

    async def _account(
        self,
        name: str,
        store: Store,
        observation: Observation,
        now: datetime,
        *,
        seen_at: Callable[[WorkspaceId], datetime | None] = lambda _ws: None,
    ) -> None:
        """Add what each observed workspace cost since its last observation to the ledger
        (`seen_at`: when the listing before showed it; see `accruals_for`)."""
        pricing = self.policies.pricing.get(name)
        if pricing is None:
            return  # not priced: nothing to account (see accruals_for)
        accruals, events = accruals_for(
            observation,
            await store.spend_points(name),
            pricing,
            now=now,
            max_gap=SPEND_GAP_LIMIT,
            zones=ledger_zones(self.policies.budgets),
            seen_at=seen_at,
        )
        await store.account_spend(name, accruals, events)

    # ------------------------------------------------------------ recover

    async def recover(
        self,
        provider: Provider,
        store: Store,
        memory: Mapping[WorkspaceId, Memory],
        state: CycleState,
        now: datetime,
    ) -> list[tuple[ActionRecord, str]]:
        """Settle the actions a crash left pending, by reading each workspace again."""
        pending = [a for a in await store.pending_actions(provider.name) if not a.dry_run]
        settled = []
        for record in pending:
            cycle = self._cycle_inputs(provider, store, {}, memory, state, now)
            outcome = await self._recover_one(cycle, record)
            if outcome is not None:
                settled.append((record, outcome))
                log.warning("action.recovered", key=record.key, outcome=outcome)
        return settled

    async def _recover_one(self, cycle: Cycle, record: ActionRecord) -> str | None:
        """How one pending action was settled; None when the platform cannot say yet."""
        decision = decision_of(record)
        try:
            fresh = await cycle.provider.refresh(record.workspace.native, now=cycle.now)
        except WorkspaceGone as e:
            await self._abandon(cycle, record, decision, f"the workspace is gone: {e}")
            return "abandoned"
        except ProviderError as e:
            log.info("action.recovery_postponed", key=record.key, error=str(e))
            return None
        if effect_seen(decision, fresh):
            data = ev.decision_data(decision) | {
                "idempotency_key": record.key,
                "dry_run": False,
                "recovered": True,
            }
            event = ev.new_event(
                ev.DONE_BY_VERB[record.verb], str(record.workspace), now=cycle.now, data=data
            )
            await cycle.store.finish_action(
                record.key, outcome="succeeded", error=None, now=cycle.now, events=[event]
            )
            return "succeeded"
        mem = cycle.memory.get(record.workspace, EMPTY_MEMORY)
        why_not = (
            "a throttle or restore is never repeated blindly"
            if record.verb in (Verb.THROTTLE, Verb.RESTORE)
            else still_stands(cycle.rules, decision, fresh, mem, now=cycle.now, since=cycle.since)
        )
        if why_not is not None:
            await self._abandon(cycle, record, decision, f"no longer due: {why_not}")
            return "abandoned"
        outcome = CycleOutcome()
        await self.actuator.send(cycle, decision, record.key, outcome)
        return "resent" if outcome.done else "failed"

    async def _abandon(
        self, cycle: Cycle, record: ActionRecord, decision: Decision, why: str
    ) -> None:
        data = {
            "workspace": str(record.workspace),
            "provider": record.workspace.provider,
            "policy": record.policy,
            "action": str(record.verb),
            "idempotency_key": record.key,
            "outcome": "abandoned",
            "reason": why,
        }
        event = ev.new_event(ev.ACTION_RECOVERED, str(record.workspace), now=cycle.now, data=data)
        await cycle.store.finish_action(
            record.key, outcome=str(Outcome.ABANDONED), error=why, now=cycle.now, events=[event]
        )

    # ------------------------------------------------------------ decide

    def decide(
        self,
        provider: Provider,
        observation: Observation,
        memory: Mapping[WorkspaceId, Memory],
        review: Review,
        state: CycleState,
        now: datetime,
    ) -> tuple[list[Decision], list[Settled]]:
        """What should happen: `decide_cycle` on this cycle's facts."""
        decisions, settled = decide_cycle(
            self.rules,
            self.policies,
            observation,
            memory,
            review,
            now=now,
            since=state.last_success_at,
            kill_switch=Capability.KILL_SWITCH in provider.capabilities,
        )
        for decision in decisions:
            self.metrics.decision(decision.policy, decision.kind)
        for standing in review.standings:
            self.metrics.budget_standing(
                standing.budget.name, standing.scope, standing.spent, standing.limit
            )
        return decisions, settled

    # ------------------------------------------------------------ rails

    async def rail_inputs(
        self,
        provider: Provider,
        store: Store,
        state: CycleState,
        observation: Observation,
        decisions: Sequence[Decision],
        memory: Mapping[WorkspaceId, Memory],
        now: datetime,
    ) -> RailInputs:
        """Everything the rails judge by, read once."""
        name = provider.name
        return RailInputs(
            provider=name,
            running=_running_base(observation, state),
            usual=await store.usual_actions(name, sorted(DISRUPTIVE), since=now - USUAL_WINDOW),
            holds={h.policy: h for h in await ep.holds(store, name)},
            retries=await ep.retries(store, name),
            announced=await self._announcements(store, decisions, memory),
            degraded=dict(self.actuator.degraded),
            budget_names=frozenset(b.name for b in self.policies.budgets),
        )

    async def _announcements(
        self, store: Store, decisions: Sequence[Decision], memory: Mapping[WorkspaceId, Memory]
    ) -> dict[str, Announced]:
        """How the warnings that announced this cycle's actions fared with their sinks."""
        ids = sorted(
            {
                w.event_id
                for d in decisions
                if d.kind is DecisionKind.ACT
                for w in [memory.get(d.workspace, EMPTY_MEMORY).warnings.get(d.policy)]
                if w is not None and w.event_id is not None
            }
        )
        router = self._router()
        if not ids or router is None:
            return dict.fromkeys(ids, Announced.NOBODY)
        statuses = await deliveries.statuses_of(store, ids)
        sinks = {s.sink: s for s in await deliveries.sink_states(store)}
        found = dict.fromkeys(ids, Announced.NOBODY)  # pruned from the outbox: long told
        for stored in await store.events_by_id(ids):
            found[stored.id] = announcement(stored, statuses.get(stored.id, {}), sinks, router)
        return found

    # ------------------------------------------------------------ act

    async def act(
        self,
        provider: Provider,
        store: Store,
        observation: Observation,
        memory: Mapping[WorkspaceId, Memory],
        railed: RailsResult,
        inputs: RailInputs,
        state: CycleState,
        now: datetime,
    ) -> CycleOutcome:
        """Holds told (once), then what the rails let through, through the actuator."""
        name = provider.name
        if railed.holds_begun:
            events = [_hold_event(hold, railed, inputs) for hold in railed.holds_begun]
            await ep.begin_holds(store, railed.holds_begun, events)
            for hold in railed.holds_begun:
                log.error("action.held", policy=hold.policy, why=hold.reason)
        await ep.end_holds(store, name, railed.holds_ended)
        # A complete listing's decisions are the whole of its provider's: heads renewed.
        whole = name if observation.complete else None
        await store.record_decisions(railed_decisions(railed), now, [], whole=whole)
        snapshots = {ws.id: ws for ws in observation.workspaces}
        cycle = self._cycle_inputs(provider, store, snapshots, memory, state, now)
        cycle = replace(
            cycle,
            first_failure=lambda d: (d.workspace, d.policy, d.verb) not in inputs.retries,
            notes=railed.notes,
        )
        outcome = await self.actuator.apply(cycle, railed.go)
        outcome.held.extend(railed.held)
        outcome.deferred.extend(railed.waiting)
        return outcome

    def _cycle_inputs(
        self,
        provider: Provider,
        store: Store,
        snapshots: Mapping[WorkspaceId, Workspace],
        memory: Mapping[WorkspaceId, Memory],
        state: CycleState,
        now: datetime,
    ) -> Cycle:
        config = self.policies.providers.get(provider.name)
        return Cycle(
            provider=provider,
            rules=self.rules,
            snapshots=snapshots,
            memory=memory,
            now=now,
            since=state.last_success_at,
            dry_run=self._dry_run() or bool(config and config.dry_run),
            store=store,
            lease_check=self.lease(provider.name).check,
        )

    # ------------------------------------------------------------ tell

    async def tell(
        self,
        provider: Provider,
        store: Store,
        observation: Observation,
        decisions: Sequence[Decision],
        outcome: CycleOutcome,
        settled: Sequence[Settled],
        inputs: RailInputs,
        now: datetime,
    ) -> None:
        """What the cycle's outcome means beyond the actions' own records."""
        name = provider.name
        await self._account_stops(name, store, outcome, observation, now)
        budgets = {b.name: b for b in self.policies.budgets}
        await self.budgets.remember(outcome, settled, budgets, now=now, store=store)
        await self._move_backoffs(store, decisions, outcome, inputs, now)
        self._count_actions(outcome, now)
        complete = observation.complete
        running = sum(1 for ws in observation.workspaces if ws.state is State.RUNNING)
        await self._listing_told(name, store, observation, complete, running, now)

    async def _listing_told(
        self,
        name: str,
        store: Store,
        observation: Observation,
        complete: bool,
        running: int,
        now: datetime,
    ) -> None:
        """The cycle marker; an outage (or a listing incomplete past `max_staleness`)
        begins or ends here, told once."""
        state = await store.cycle_state(name)
        events: list[Event] = []
        unreachable: bool | None = None
        last_complete = now if complete else state.last_complete_at
        stale = last_complete is None or now - last_complete > self.rules.settings.max_staleness
        if not complete and stale:
            unreachable = True
            if state.unreachable_since is None:
                why = f"the listing has been incomplete ({_unread_pages(observation)} pages unread)"
                events.append(_unreachable(name, why, now))
        elif state.unreachable_since is not None:
            unreachable = False
            events.append(
                ev.new_event(ev.PROVIDER_RECOVERED, name, now=now, data={"provider": name})
            )
        self.status[name].unreachable = bool(unreachable)
        await store.mark_cycle(
            name,
            now,
            success=True,
            events=events,
            complete_running=running if complete else None,
            unreachable=unreachable,
        )

    async def _move_backoffs(
        self,
        store: Store,
        decisions: Sequence[Decision],
        outcome: CycleOutcome,
        inputs: RailInputs,
        now: datetime,
        *,
        among: set[WorkspaceId] | None = None,
    ) -> None:
        """A failure moves its action's next attempt out; a success, or an action no
        longer wanted, ends its episode (`among`: only these workspaces were decided)."""
        changed = []
        for decision, error in outcome.failed:
            assert decision.verb is not None
            key = (decision.workspace, decision.policy, decision.verb)
            before = inputs.retries.get(key)
            sent = id(decision) not in outcome.unsent
            failures = (before.failures if before else 0) + (1 if sent else 0)
            wait = ACTIONS.delay(max(failures, 1), outcome.retry_after.get(id(decision)))
            if not sent:
                wait = outcome.retry_after.get(id(decision)) or wait
            changed.append(
                ep.Retry(
                    key=key,
                    failures=failures,
                    first_failed_at=before.first_failed_at if before else now,
                    next_attempt_at=now + wait,
                    last_error=error,
                )
            )
        await ep.save_retries(store, changed)
        wanted = {(d.workspace, d.policy, d.verb) for d in decisions if d.kind is DecisionKind.ACT}
        done = {(d.workspace, d.policy, d.verb) for d in outcome.done}
        ended = [
            key
            for key in inputs.retries
            if (among is None or key[0] in among) and (key in done or key not in wanted)
        ]
        await ep.end_retries(store, ended)

    async def _account_stops(
        self,
        name: str,
        store: Store,
        outcome: CycleOutcome,
        observation: Observation,
        now: datetime,
    ) -> None:
        """A workspace Warden stopped costs nothing from now: its spend ends at the stop,
        not at the next poll that sees it stopped (a poll interval's worth less error)."""
        snapshots = {ws.id: ws for ws in observation.workspaces}
        stopped = [
            replace(snapshots[d.workspace], state=State.STOPPED, observed_at=now)
            for d in outcome.done
            if d.verb in (Verb.STOP, Verb.KILL_SWITCH) and d.workspace in snapshots
        ]
        if stopped:
            # Not watched as running on: each stop closes its open span now.
            await self._account(name, store, Observation(name, now, stopped), now)

    def _count_actions(self, outcome: CycleOutcome, now: datetime) -> None:
        """Each action's outcome, and how late a warned one ran after its deadline."""
        for decision in outcome.done:
            late = _lateness(decision, now)
            self.metrics.action(
                decision.policy, str(decision.verb), "succeeded", latency_after_due=late
            )
        for decision in outcome.planned:
            self.metrics.action(decision.policy, str(decision.verb), "planned")
        for decision, _why in outcome.failed:
            self.metrics.action(decision.policy, str(decision.verb), "failed")
        for decision, _why in outcome.held:
            self.metrics.action(decision.policy, str(decision.verb), "held")

    def _keep_due(
        self,
        name: str,
        observation: Observation,
        memory: Mapping[WorkspaceId, Memory],
        outcome: CycleOutcome,
        railed: RailsResult,
        now: datetime,
        *,
        merge: bool = False,
    ) -> datetime | None:
        """When each workspace's decision changes without new facts, from the memory as
        the cycle left it (no second read), kept per provider for the due cycles; the
        earliest. A full cycle replaces the set; a due cycle merges its workspaces in."""
        after = memory_after(memory, outcome, now)
        found = due_times(self.rules, observation.workspaces, after, now=now)
        if railed.waits_for_delivery:
            waiting = {d.workspace for d, why in railed.waiting if "warning" in why}
            found.update(dict.fromkeys(waiting, now + DELIVERY_RECHECK))
        if merge:
            self.due.setdefault(name, {}).update(found)
        else:
            self.due[name] = found
        return min(self.due[name].values(), default=None)

    async def _tell_fenced(self, lease: Leadership, now: datetime) -> None:
        """Say so: this replica stops acting here. Written unfenced, as a plain report."""
        data = {"replica": lease.holder, "lease": lease.lease, "epoch": 0}
        event = ev.new_event(ev.REPLICA_FENCED, f"replicas/{lease.holder}", now=now, data=data)
        try:
            await self.store.add_events([event])
        except Exception as e:  # the database may be what failed: the log says it all
            log.error("lease.fenced_report_failed", error=str(e))


# ---------------------------------------------------------------- decide, pure


def decide_cycle(
    rules: Rules,
    policies: PolicySet,
    observation: Observation,
    memory: Mapping[WorkspaceId, Memory],
    review: Review,
    *,
    now: datetime,
    since: datetime | None,
    kill_switch: bool,
) -> tuple[list[Decision], list[Settled]]:
    """Policies and budgets together: one state change per workspace. Pure.

    On a platform whose stop is a kill switch, stops and resumes are called by that name.
    """
    decisions = decide(rules, observation.workspaces, memory, now=now, since=since)
    settled: list[Settled] = []
    if policies.budgets:
        enforced = enforcement(review.standings, observation.workspaces)
        snapshots = {ws.id: ws for ws in observation.workspaces}
        undone = undo(review.ended, snapshots, memory, rules, now=now)
        decisions = combine(decisions, enforced, undone.decisions)
        settled = undone.settled
    if kill_switch:
        decisions = kill_switch_names(decisions)
    return decisions, settled


def decision_of(record: ActionRecord) -> Decision:
    """A journalled action as the decision it carried out (for recovery)."""
    details: Mapping[str, Any] = record.details or {}
    extend_to = details.get("extend_to")
    return Decision(
        kind=DecisionKind.ACT,
        workspace=record.workspace,
        policy=record.policy,
        verb=record.verb,
        reason=record.reason,
        extend_to=datetime.fromisoformat(extend_to) if isinstance(extend_to, str) else None,
        facts=dict(details.get("facts") or {}),
    )


def memory_after(
    memory: Mapping[WorkspaceId, Memory], outcome: CycleOutcome, now: datetime
) -> dict[WorkspaceId, Memory]:
    """The memory as this cycle's warnings and clears left it (no second read)."""
    after = dict(memory)
    for d in outcome.warned:
        mem = after.get(d.workspace, EMPTY_MEMORY)
        assert d.verb is not None
        assert d.due_at is not None
        warning = Warning(policy=d.policy, verb=d.verb, warned_at=now, due_at=d.due_at)
        after[d.workspace] = replace(mem, warnings={**mem.warnings, d.policy: warning})
    for d in outcome.cleared:
        mem = after.get(d.workspace, EMPTY_MEMORY)
        after[d.workspace] = replace(
            mem, warnings={k: v for k, v in mem.warnings.items() if k != d.policy}
        )
    return after


def railed_decisions(railed: RailsResult) -> list[Decision]:
    """Every decision the rails saw, for `warden explain`."""
    return [*railed.go, *(d for d, _ in railed.waiting), *(d for d, _ in railed.held)]


def _planned(railed: RailsResult) -> CycleOutcome:
    """`plan`: what a run would do (as planned), wait for, and hold."""
    outcome = CycleOutcome()
    for d in railed.go:
        if d.kind is DecisionKind.ACT:
            outcome.planned.append(d)
        elif d.kind is DecisionKind.WARN:
            outcome.warned.append(d)
        elif d.kind is DecisionKind.CLEAR:
            outcome.cleared.append(d)
    outcome.held.extend(railed.held)
    outcome.deferred.extend(railed.waiting)
    return outcome


def _running_base(observation: Observation, state: CycleState) -> int:
    """The running workspaces the blast radius is a share of: this listing's if it read
    every page, else the last complete one's (a partial listing is no measure)."""
    running = sum(1 for ws in observation.workspaces if ws.state is State.RUNNING)
    if observation.complete or state.running is None:
        return running
    return max(running, state.running)


def _unread_pages(observation: Observation) -> int:
    return observation.unread_pages


def _subject(native_id: str | None, reason: str) -> str:
    """An episode's name: the workspace, or the page the reason names."""
    if native_id is not None:
        return native_id
    head = reason.split(":", 1)[0]
    return head if head.startswith("page") else "listing"


def _unreachable(name: str, error: str, now: datetime) -> Event:
    return ev.new_event(
        ev.PROVIDER_UNREACHABLE, name, now=now, data={"provider": name, "error": error}
    )


def _rejected(
    provider: str, native_id: str | None, reason: str, now: datetime, observation: Observation
) -> Event:
    subject = f"{provider}/{native_id}" if native_id else provider
    data: dict[str, Any] = {
        "provider": provider,
        "workspace": subject if native_id else None,
        "reason": reason,
    }
    if native_id is None:
        data["unread_pages"] = _unread_pages(observation)
        data["page"] = _subject(None, reason).removeprefix("page").strip()
    return ev.new_event(ev.PROVIDER_ANSWER_REJECTED, subject, now=now, data=data)


def _hold_event(hold: ep.Hold, railed: RailsResult, inputs: RailInputs) -> Event:
    workspaces = sorted(str(d.workspace) for d, _ in railed.held if d.policy == hold.policy)
    return ev.new_event(
        ev.ACTION_HELD,
        hold.provider,
        now=hold.since,
        data={
            "provider": hold.provider,
            "policy": hold.policy,
            "held_because": hold.reason,
            "workspaces": workspaces,
            "running": inputs.running,
            "limit": hold.allowed,
            "usual": inputs.usual.get(hold.policy, 0),
            "release": f"warden holds release {hold.provider} {hold.policy}",
        },
    )


def _lateness(decision: Decision, now: datetime) -> timedelta | None:
    due = decision.facts.get("due_at")
    if not isinstance(due, str):
        return None
    try:
        return now - datetime.fromisoformat(due)
    except ValueError:
        return None


__all__ = ["CycleResult", "Pipeline", "ProviderStatus", "decide_cycle"]
