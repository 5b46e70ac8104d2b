"""The actuator: applies decisions behind the safety rails. The only caller of actions.

Rails, in order: dry run; blast radius (too many stops in one cycle → none, and an
alarm); the circuit breaker; idempotency (one stop per running period and policy);
a fresh read right before a stop, which must still justify it; retries of transient
failures with backoff that honours Retry-After. Every outcome is written with its
event in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import anyio
import structlog

from warden.errors import ProviderError, ProviderUnavailable
from warden.events import catalogue as ev
from warden.model import (
    EMPTY_MEMORY,
    Decision,
    DecisionKind,
    Event,
    Memory,
    Verb,
    Warning,
    Workspace,
    WorkspaceId,
)
from warden.policy.decide import Rules, decide_policy
from warden.providers.base import Provider
from warden.retry import Backoff, CircuitBreaker, Sleep, with_retries

log = structlog.get_logger(__name__)

DISRUPTIVE = frozenset({Verb.STOP, Verb.RESUME})


class ActionStore(Protocol):
    """The part of the store the actuator writes to."""

    async def save_warning(
        self, ws: WorkspaceId, warning: Warning, events: Sequence[Event]
    ) -> None: ...
    async def clear_warning(
        self, ws: WorkspaceId, policy: str, events: Sequence[Event]
    ) -> None: ...
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
        self._links = links

    def breaker(self, provider: str) -> CircuitBreaker:
        return self._breakers.setdefault(provider, CircuitBreaker())

    async def apply(self, cycle: Cycle, decisions: Sequence[Decision]) -> CycleOutcome:
        outcome = CycleOutcome()
        held = await self._blast_radius(cycle, decisions, outcome)
        for decision in decisions:
            with structlog.contextvars.bound_contextvars(
                workspace=str(decision.workspace), policy=decision.policy
            ):
                if id(decision) in held:
                    continue
                await self._apply_one(cycle, decision, outcome)
        return outcome

    async def _apply_one(self, cycle: Cycle, decision: Decision, outcome: CycleOutcome) -> None:
        if decision.kind is DecisionKind.WARN:
            await self._warn(cycle, decision)
            outcome.warned.append(decision)
        elif decision.kind is DecisionKind.CLEAR:
            event = ev.decision_event(decision, now=cycle.now)
            await self._store.clear_warning(decision.workspace, decision.policy, [event])
            outcome.cleared.append(decision)
        elif decision.kind is DecisionKind.SKIP:
            await self._store.add_events([ev.decision_event(decision, now=cycle.now)])
        elif decision.verb is Verb.NOTIFY:
            await self._notify(cycle, decision)
            outcome.done.append(decision)
        else:
            await self._act(cycle, decision, outcome)

    async def _warn(self, cycle: Cycle, decision: Decision) -> None:
        assert decision.due_at is not None
        assert decision.verb is not None
        warning = Warning(
            policy=decision.policy, verb=decision.verb, warned_at=cycle.now, due_at=decision.due_at
        )
        extra = self._links.for_warning(decision) if self._links else {}
        event = ev.decision_event(decision, now=cycle.now, extra=extra)
        await self._store.save_warning(decision.workspace, warning, [event])
        log.info("workspace.warned", due_at=decision.due_at.isoformat(), reason=decision.reason)

    async def _notify(self, cycle: Cycle, decision: Decision) -> None:
        """A notification is remembered as a warning that is already due, so it is sent once."""
        warning = Warning(
            policy=decision.policy, verb=Verb.NOTIFY, warned_at=cycle.now, due_at=cycle.now
        )
        event = ev.new_event(
            ev.WORKSPACE_NOTIFIED,
            str(decision.workspace),
            now=cycle.now,
            data=ev.decision_data(decision),
        )
        await self._store.save_warning(decision.workspace, warning, [event])

    async def _act(self, cycle: Cycle, decision: Decision, outcome: CycleOutcome) -> None:
        assert decision.verb is not None
        dry_run = decision.dry_run or cycle.dry_run
        key = idempotency_key(
            decision,
            cycle.memory.get(decision.workspace, EMPTY_MEMORY),
            cycle.snapshots.get(decision.workspace),
            dry_run=dry_run,
        )
        data = ev.decision_data(decision) | {"idempotency_key": key, "dry_run": dry_run}
        if dry_run:
            event = ev.new_event(
                ev.ACTION_PLANNED, str(decision.workspace), now=cycle.now, data=data
            )
            if await self._begin(cycle, decision, key, dry_run=True, events=[event]):
                await self._store.finish_action(
                    key, outcome="planned", error=None, now=cycle.now, events=[]
                )
                outcome.planned.append(decision)
            return
        breaker = self.breaker(cycle.provider.name)
        if not breaker.allows(cycle.now):
            await self._hold(cycle, decision, "circuit open: provider failing", outcome)
            return
        if not await self._begin(cycle, decision, key, dry_run=False, events=[]):
            return  # already done or in flight under this key
        error = await self._execute(cycle, decision, breaker)
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
    ) -> str | None:
        """Carry out the action; None on success, else why it did not happen."""
        try:
            target = await self._recheck(cycle, decision)
            if isinstance(target, str):
                return target
            await with_retries(
                lambda: _perform(cycle.provider, decision, target),
                backoff=self._backoff,
                sleep=self._sleep,
            )
        except ProviderUnavailable as e:
            if breaker.record_failure(cycle.now):
                log.warning("provider.circuit_opened", provider=cycle.provider.name)
            return str(e)
        except ProviderError as e:
            return str(e)
        breaker.record_success()
        return None

    async def _recheck(self, cycle: Cycle, decision: Decision) -> Workspace | str:
        """Read the workspace again; the decision must still stand on the fresh facts."""
        fresh = await cycle.provider.refresh(decision.workspace.native, now=cycle.now)
        policy = next(p for p in cycle.rules.policies if p.name == decision.policy)
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
        await self._store.finish_action(
            key, outcome=result, error=error, now=cycle.now, events=[event]
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
        disruptive = [
            d
            for d in decisions
            if d.kind is DecisionKind.ACT
            and d.verb in DISRUPTIVE
            and not (d.dry_run or cycle.dry_run)
        ]
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


def allowed_actions(rules: Rules, running: int) -> int:
    """At most N actions and at most P% of running workspaces (but at least one)."""
    by_share = max(1, math.floor(running * rules.settings.max_percent_per_cycle / 100))
    return min(rules.settings.max_actions_per_cycle, by_share)


def idempotency_key(decision: Decision, mem: Memory, ws: Workspace | None, *, dry_run: bool) -> str:
    """One action per workspace, policy, verb and episode: a running period, a stop."""
    assert decision.verb is not None
    if decision.verb is Verb.RESUME:
        episode = mem.stopped_at.isoformat() if mem.stopped_at else "unknown"
    else:
        started = mem.running_since or (ws.started_at if ws else None)
        episode = started.isoformat() if started else "unknown"
    if decision.verb is Verb.EXTEND:
        episode += f"#{mem.extensions_used.get(decision.policy, 0) + 1}"
    prefix = "dry-run|" if dry_run else ""
    return f"{prefix}{decision.workspace}|{decision.policy}|{decision.verb}|{episode}"


async def _perform(provider: Provider, decision: Decision, ws: Workspace) -> None:
    if decision.verb is Verb.STOP:
        await provider.stop(ws)
    elif decision.verb is Verb.RESUME:
        await provider.start(ws)
    elif decision.verb is Verb.EXTEND:
        assert decision.extend_to is not None
        await provider.extend(ws, decision.extend_to)
    else:
        raise ValueError(f"no platform action for {decision.verb}")


class LinkMaker(Protocol):
    """Adds links (explain, snooze) to a warning's event data."""

    def for_warning(self, decision: Decision) -> dict[str, Any]: ...
