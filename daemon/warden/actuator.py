"""The actuator: applies decisions behind the safety rails. The only caller of actions.

Rails, in order: dry run; blast radius (too many stops in one cycle → none, and an
alarm); the circuit breaker; idempotency (one stop per running period and policy);
a fresh read right before a stop, which must still justify it; retries of transient
failures with backoff that honours Retry-After. Every outcome is written with its
event in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import anyio
import structlog

from warden.errors import ProviderError, ProviderUnavailable, Unauthorized
from warden.events import catalogue as ev
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
from warden.policy.decide import Rules, decide_policy
from warden.policy.lifecycle import current_lifecycle, merge_lifecycle, short_hash
from warden.providers.agentrun import LimitsCapable, Replaced
from warden.providers.base import LifecycleCapable, Provider
from warden.retry import Backoff, CircuitBreaker, Sleep, with_retries
from warden.store.rows import PlannedAction

log = structlog.get_logger(__name__)

DISRUPTIVE = frozenset({Verb.STOP, Verb.RESUME})
ONE_ATTEMPT = Backoff(attempts=1)
T = TypeVar("T")


class ActionStore(Protocol):
    """The part of the store the actuator writes to."""

    async def save_warnings(
        self, warnings: Sequence[tuple[WorkspaceId, Warning]], events: Sequence[Event]
    ) -> None: ...
    async def clear_warnings(
        self, cleared: Sequence[tuple[WorkspaceId, str]], events: Sequence[Event]
    ) -> None: ...
    async def record_plans(
        self, plans: Sequence[PlannedAction], now: datetime, events: Mapping[str, Event]
    ) -> list[str]: ...
    async def add_events(self, events: Sequence[Event]) -> None: ...
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
    ) -> bool: ...
    async def finish_action(
        self,
        key: str,
        *,
        outcome: str,
        error: str | None,
        now: datetime,
        events: Sequence[Event],
    ) -> None: ...


@dataclass(slots=True)
class CycleOutcome:
    """What one provider's cycle did, for logs, the demo and tests."""

    done: list[Decision] = field(default_factory=list)
    planned: list[Decision] = field(default_factory=list)
    failed: list[tuple[Decision, str]] = field(default_factory=list)
    held: list[tuple[Decision, str]] = field(default_factory=list)
    warned: list[Decision] = field(default_factory=list)
    cleared: list[Decision] = field(default_factory=list)
    # What a throttle replaced, by workspace: kept by its budget to restore at the reset.
    replaced: dict[WorkspaceId, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cycle:
    """Everything an action needs to be re-checked against: the cycle's inputs."""

    provider: Provider
    rules: Rules
    snapshots: Mapping[WorkspaceId, Workspace]
    memory: Mapping[WorkspaceId, Memory]
    now: datetime
    since: datetime | None
    dry_run: bool  # global or provider-level dry run


class Actuator:
    """Applies one cycle's decisions for one provider."""

    def __init__(
        self,
        *,
        store: ActionStore,
        backoff: Backoff | None = None,
        sleep: Sleep | None = None,
        links: LinkMaker | None = None,
    ) -> None:
        self._store = store
        self._backoff = backoff or Backoff()
        self._sleep: Sleep = sleep or anyio.sleep
        self._breakers: dict[str, CircuitBreaker] = {}
        # (provider, policy, verb) → what the platform said is missing: a scope or a plan.
        # Such a request cannot succeed by asking again; a policy reload forgets these.
        self.degraded: dict[tuple[str, str, str], str] = {}
        self._links = links

    def breaker(self, provider: str) -> CircuitBreaker:
        return self._breakers.setdefault(provider, CircuitBreaker())

    async def apply(self, cycle: Cycle, decisions: Sequence[Decision]) -> CycleOutcome:
        """Write what needs no platform call in bulk, then act one action at a time."""
        outcome = CycleOutcome()
        held = await self._blast_radius(cycle, decisions, outcome)
        kept = [d for d in decisions if id(d) not in held]
        await self._record_notes(cycle, kept, outcome)
        acts = [d for d in kept if d.kind is DecisionKind.ACT and d.verb is not Verb.NOTIFY]
        await self._record_plans(cycle, [d for d in acts if self._is_dry(cycle, d)], outcome)
        for decision in acts:
            if not self._is_dry(cycle, decision):
                with structlog.contextvars.bound_contextvars(
                    workspace=str(decision.workspace), policy=decision.policy
                ):
                    await self._act(cycle, decision, outcome)
        return outcome

    @staticmethod
    def _is_dry(cycle: Cycle, decision: Decision) -> bool:
        return decision.dry_run or cycle.dry_run

    async def _record_notes(
        self, cycle: Cycle, decisions: Sequence[Decision], outcome: CycleOutcome
    ) -> None:
        """Warnings, clears, skips and notifications: Warden's own state, in two writes."""
        warnings: list[tuple[WorkspaceId, Warning]] = []
        cleared: list[tuple[WorkspaceId, str]] = []
        saved_events: list[Event] = []
        cleared_events: list[Event] = []
        for d in decisions:
            if d.kind is DecisionKind.WARN:
                warnings.append((d.workspace, self._warning(d, cycle.now)))
                extra = self._links.for_warning(d) if self._links else {}
                saved_events.append(ev.decision_event(d, now=cycle.now, extra=extra))
                outcome.warned.append(d)
            elif d.kind is DecisionKind.ACT and d.verb is Verb.NOTIFY:
                # Remembered as a warning already due, so that it is told once.
                warnings.append((d.workspace, self._warning(d, cycle.now, due_at=cycle.now)))
                saved_events.append(
                    ev.new_event(
                        ev.WORKSPACE_NOTIFIED,
                        str(d.workspace),
                        now=cycle.now,
                        data=ev.decision_data(d),
                    )
                )
                outcome.done.append(d)
            elif d.kind is DecisionKind.SKIP:
                saved_events.append(ev.decision_event(d, now=cycle.now))
            elif d.kind is DecisionKind.CLEAR:
                cleared.append((d.workspace, d.policy))
                cleared_events.append(ev.decision_event(d, now=cycle.now))
                outcome.cleared.append(d)
        if warnings or saved_events:
            await self._store.save_warnings(warnings, saved_events)
        if cleared:
            await self._store.clear_warnings(cleared, cleared_events)
        if warnings:
            log.info("workspaces.warned", count=len(outcome.warned))

    @staticmethod
    def _warning(decision: Decision, now: datetime, *, due_at: datetime | None = None) -> Warning:
        due = due_at or decision.due_at
        assert due is not None
        assert decision.verb is not None
        return Warning(policy=decision.policy, verb=decision.verb, warned_at=now, due_at=due)

    async def _record_plans(
        self, cycle: Cycle, decisions: Sequence[Decision], outcome: CycleOutcome
    ) -> None:
        """Dry run: each planned action is recorded and told once, all in one write."""
        plans, events, by_key = [], {}, {}
        for d in decisions:
            assert d.verb is not None
            key = self._key(cycle, d, dry_run=True)
            plans.append(
                PlannedAction(
                    key=key, ws=d.workspace, policy=d.policy, verb=d.verb, reason=d.reason
                )
            )
            data = ev.decision_data(d) | {"idempotency_key": key, "dry_run": True}
            events[key] = ev.new_event(
                ev.ACTION_PLANNED, str(d.workspace), now=cycle.now, data=data
            )
            by_key[key] = d
        for key in await self._store.record_plans(plans, cycle.now, events):
            outcome.planned.append(by_key[key])

    @staticmethod
    def _key(cycle: Cycle, decision: Decision, *, dry_run: bool) -> str:
        return idempotency_key(
            decision,
            cycle.memory.get(decision.workspace, EMPTY_MEMORY),
            cycle.snapshots.get(decision.workspace),
            dry_run=dry_run,
        )

    async def _act(self, cycle: Cycle, decision: Decision, outcome: CycleOutcome) -> None:
        """One real action: breaker, idempotency, fresh read, retries, recorded outcome."""
        key = self._key(cycle, decision, dry_run=False)
        data = ev.decision_data(decision) | {"idempotency_key": key, "dry_run": False}
        missing = self.degraded.get(_degradation(cycle, decision))
        if missing is not None:  # told once, when it happened: no event every cycle
            outcome.held.append((decision, f"policy degraded: the platform lacks {missing}"))
            return
        breaker = self.breaker(cycle.provider.name)
        if not breaker.allows(cycle.now):
            await self._hold(cycle, decision, "circuit open: provider failing", outcome)
            return
        if not await self._begin(cycle, decision, key, dry_run=False, events=[]):
            return  # already done or in flight under this key
        error, result = await self._execute(cycle, decision, breaker)
        if result is not None:
            outcome.replaced[decision.workspace] = result
            data = data | {"replaced": result}
        await self._finish(cycle, decision, key, data, error, outcome)

    async def _begin(
        self, cycle: Cycle, decision: Decision, key: str, *, dry_run: bool, events: list[Event]
    ) -> bool:
        assert decision.verb is not None
        started = await self._store.begin_action(
            key=key,
            ws=decision.workspace,
            policy=decision.policy,
            verb=decision.verb,
            reason=decision.reason,
            now=cycle.now,
            dry_run=dry_run,
            events=events,
        )
        if not started:
            log.debug("action.already_recorded", key=key)
        return started

    async def _execute(
        self, cycle: Cycle, decision: Decision, breaker: CircuitBreaker
    ) -> tuple[str | None, dict[str, Any] | None]:
        """Carry out the action: (None, what it returns) on success, else (why not, None)."""
        try:
            target = await self._recheck(cycle, decision)
            if isinstance(target, str):
                return target, None
            result = await with_retries(
                lambda: _perform(cycle.provider, decision, target),
                # A throttle repeated after a lost answer would remember its own limits
                # as the ones to restore: it is tried once, and again next cycle.
                backoff=ONE_ATTEMPT if decision.verb is Verb.THROTTLE else self._backoff,
                sleep=self._sleep,
            )
        except ProviderUnavailable as e:
            if breaker.record_failure(cycle.now):
                log.warning("provider.circuit_opened", provider=cycle.provider.name)
            return str(e), None
        except Unauthorized as e:
            if e.status == 403:  # a scope or plan the platform says is missing
                self.degraded[_degradation(cycle, decision)] = e.missing or "a permission"
            return str(e), None
        except ProviderError as e:
            return str(e), None
        breaker.record_success()
        return None, result

    async def _recheck(self, cycle: Cycle, decision: Decision) -> Workspace | str:
        """Read the workspace again; the decision must still stand on the fresh facts."""
        fresh = await cycle.provider.refresh(decision.workspace.native, now=cycle.now)
        policy = next((p for p in cycle.rules.policies if p.name == decision.policy), None)
        if policy is None:  # a budget's action: its spend was judged this cycle
            return budget_recheck(decision, fresh)
        mem = cycle.memory.get(decision.workspace, EMPTY_MEMORY)
        again = decide_policy(cycle.rules, policy, fresh, mem, now=cycle.now, since=cycle.since)
        if again is None or again.kind is not DecisionKind.ACT or again.verb is not decision.verb:
            return f"skipped: a fresh read no longer justifies it ({fresh.state})"
        return fresh

    async def _finish(
        self,
        cycle: Cycle,
        decision: Decision,
        key: str,
        data: dict[str, Any],
        error: str | None,
        outcome: CycleOutcome,
    ) -> None:
        assert decision.verb is not None
        ref = str(decision.workspace)
        extra: list[Event] = []
        if error is None:
            event = ev.new_event(ev.DONE_BY_VERB[decision.verb], ref, now=cycle.now, data=data)
            result = "succeeded"
            outcome.done.append(decision)
            log.info("action.succeeded", action=str(decision.verb), reason=decision.reason)
        elif error.startswith("skipped:"):
            event = ev.new_event(
                ev.WORKSPACE_SKIPPED, ref, now=cycle.now, data=data | {"error": error}
            )
            result = "skipped"
            outcome.held.append((decision, error))
            log.info("action.skipped", action=str(decision.verb), why=error)
        else:
            event = ev.new_event(ev.ACTION_FAILED, ref, now=cycle.now, data=data | {"error": error})
            result = "failed"
            outcome.failed.append((decision, error))
            log.warning("action.failed", action=str(decision.verb), error=error)
            missing = self.degraded.get(_degradation(cycle, decision))
            if missing is not None:
                extra = [_degraded_event(cycle, decision, missing, error)]
        await self._store.finish_action(
            key, outcome=result, error=error, now=cycle.now, events=[event, *extra]
        )

    async def _hold(
        self, cycle: Cycle, decision: Decision, why: str, outcome: CycleOutcome
    ) -> None:
        event = ev.new_event(
            ev.ACTION_HELD,
            str(decision.workspace),
            now=cycle.now,
            data=ev.decision_data(decision) | {"held_because": why},
        )
        await self._store.add_events([event])
        outcome.held.append((decision, why))

    async def _blast_radius(
        self, cycle: Cycle, decisions: Sequence[Decision], outcome: CycleOutcome
    ) -> set[int]:
        """Too many disruptive actions in one cycle means something is wrong: act on none."""
        disruptive = [d for d in decisions if counts_toward_blast_radius(d, dry_run=cycle.dry_run)]
        running = sum(1 for ws in cycle.snapshots.values() if ws.state == "running")
        limit = allowed_actions(cycle.rules, running)
        if len(disruptive) <= limit:
            return set()
        why = f"{len(disruptive)} actions in one cycle exceed the limit of {limit}"
        event = ev.new_event(
            ev.ACTION_HELD,
            cycle.provider.name,
            now=cycle.now,
            data={
                "provider": cycle.provider.name,
                "held_because": why,
                "workspaces": sorted(str(d.workspace) for d in disruptive),
                "running": running,
                "limit": limit,
            },
        )
        await self._store.add_events([event])
        log.error("action.blast_radius_exceeded", provider=cycle.provider.name, why=why)
        outcome.held.extend((d, why) for d in disruptive)
        return {id(d) for d in disruptive}


def _degradation(cycle: Cycle, decision: Decision) -> tuple[str, str, str]:
    return (cycle.provider.name, decision.policy, str(decision.verb))


def _degraded_event(cycle: Cycle, decision: Decision, missing: str, error: str) -> Event:
    """The one event that says a policy cannot work on a provider until someone acts."""
    return ev.new_event(
        ev.POLICY_DEGRADED,
        cycle.provider.name,
        now=cycle.now,
        data={
            "provider": cycle.provider.name,
            "policy": decision.policy,
            "action": str(decision.verb),
            "missing": missing,
            "error": error,
        },
    )


def counts_toward_blast_radius(decision: Decision, *, dry_run: bool = False) -> bool:
    """A real stop or resume (not planned in a dry run) is what the blast radius counts."""
    return (
        decision.kind is DecisionKind.ACT
        and decision.verb in DISRUPTIVE
        and not (decision.dry_run or dry_run)
    )


def allowed_actions(rules: Rules, running: int) -> int:
    """At most N actions and at most P% of running workspaces (but at least one)."""
    by_share = max(1, math.floor(running * rules.settings.max_percent_per_cycle / 100))
    return min(rules.settings.max_actions_per_cycle, by_share)


def idempotency_key(decision: Decision, mem: Memory, ws: Workspace | None, *, dry_run: bool) -> str:
    """One action per workspace, policy, verb and episode: a running period, a stop, a config."""
    assert decision.verb is not None
    if "episode" in decision.facts:  # a budget's throttle or undo: once per window
        episode = str(decision.facts["episode"])
    elif decision.verb is Verb.RESUME:
        episode = mem.stopped_at.isoformat() if mem.stopped_at else "unknown"
    elif decision.verb is Verb.CONFIGURE:
        episode = configure_episode(decision)
    else:
        started = mem.running_since or (ws.started_at if ws else None)
        episode = started.isoformat() if started else "unknown"
    if decision.verb is Verb.EXTEND:
        episode += f"#{mem.extensions_used.get(decision.policy, 0) + 1}"
    prefix = "dry-run|" if dry_run else ""
    return f"{prefix}{decision.workspace}|{decision.policy}|{decision.verb}|{episode}"


def configure_episode(decision: Decision) -> str:
    """The settings wanted and the config they replace, each as a short hash.

    A policy edit changes the first, so it is applied again; a change made on the
    platform since changes the second, so it is put right again. A platform that
    accepts the patch and keeps its old config (open-source Mage ignores it) gives the
    same key next cycle: patched once, not every cycle. The price: a config put back
    on the platform to exactly one Warden already replaced looks the same, and is not
    written again until the policy (or the config) changes.
    """
    wanted = short_hash(decision.facts.get("wanted"))
    replaced = short_hash([decision.facts.get("current"), decision.facts.get("lifecycle_config")])
    return f"lifecycle:{wanted}:{replaced}"


def lifecycle_to_write(provider: str, decision: Decision, fresh: Workspace) -> dict[str, Any]:
    """The policy's fields merged into the *fresh* read's config, not the cycle's older one:
    the platform replaces the whole config, so a hook added since the poll must be kept."""
    current = current_lifecycle(fresh)
    if current is None:  # the recheck needs it known; never send a config built on nothing
        raise ProviderError(provider, f"configure {fresh.ref}: the lifecycle config is unknown")
    return merge_lifecycle(current, decision.facts["wanted"])


def budget_recheck(decision: Decision, fresh: Workspace) -> Workspace | str:
    """A budget's stop needs the workspace running, its resume stopped; never mid-build."""
    if fresh.transitioning:
        return f"skipped: an operation is in flight ({fresh.state})"
    wanted = {Verb.STOP: State.RUNNING, Verb.RESUME: State.STOPPED}.get(decision.verb)  # type: ignore[arg-type]
    if wanted is not None and fresh.state is not wanted:
        return f"skipped: a fresh read no longer justifies it ({fresh.state})"
    return fresh


async def _perform(provider: Provider, decision: Decision, ws: Workspace) -> dict[str, Any] | None:
    """The platform call; what it returns to keep (a throttle's replaced limits), if any."""
    if decision.verb is Verb.STOP:
        await provider.stop(ws)
    elif decision.verb is Verb.RESUME:
        await provider.start(ws)
    elif decision.verb is Verb.EXTEND:
        assert decision.extend_to is not None
        await provider.extend(ws, decision.extend_to)
    elif decision.verb is Verb.THROTTLE and isinstance(provider, LimitsCapable):
        limits = decision.facts["throttle"]
        replaced = await provider.throttle(
            max_concurrent_runs=_maybe(int, limits.get("max_concurrent_runs")),
            daily_budget_usd=_maybe(Decimal, limits.get("daily_budget_usd")),
            user_daily_budget_usd=_maybe(Decimal, limits.get("user_daily_budget_usd")),
        )
        return replaced.to_json()
    elif decision.verb is Verb.RESTORE and isinstance(provider, LimitsCapable):
        await provider.restore(Replaced.from_json(decision.facts["replaced"]))
    elif decision.verb is Verb.CONFIGURE and isinstance(provider, LifecycleCapable):
        await provider.patch_lifecycle(ws, lifecycle_to_write(provider.name, decision, ws))
    else:
        raise ValueError(f"no platform action for {decision.verb} on {provider.name}")
    return None


def _maybe(kind: Callable[[str], T], value: str | None) -> T | None:
    return None if value is None else kind(value)


class LinkMaker(Protocol):
    """Adds links (explain, snooze) to a warning's event data."""

    def for_warning(self, decision: Decision) -> dict[str, Any]: ...
