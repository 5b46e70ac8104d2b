"""The actuator: carries out what the rails let through. The only caller of actions.

It decides nothing: which decisions go, wait or are held was settled by the decide
stage and the rails (`warden.rails`). For each action it journals, checks, performs
and records, in this order:

1. begin: the action is written `pending` under its idempotency key, with what
   recovery needs (`details`), in a transaction fenced by the lease epoch; a key
   already taken (done, or pending from a crash) means nothing is sent;
2. a fresh read of the workspace, on which the decision must still stand
   (`policy.decide.still_stands`: the same rule, asked again);
3. the lease's local deadline (`Leadership.check`), right before the mutation;
4. the platform call, once (a failure waits for a later cycle, never a tight loop);
5. finish: the outcome with its event, and what it means to the memory (who stopped
   what), in one fenced transaction. A failure is told only at the first failure of its
   episode (`first_failure`); the backoff itself is kept by the cycle's tell stage.

Warnings, clears, skips, notifications and dry-run plans need no platform call and are
written in bulk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import structlog

from warden.errors import BadAnswer, ProviderError, ProviderUnavailable, Unauthorized
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
from warden.policy.decide import Rules, still_stands
from warden.policy.lifecycle import current_lifecycle, merge_lifecycle, short_hash
from warden.providers.agentrun import KillSwitchCapable, LimitsCapable, Replaced
from warden.providers.base import LifecycleCapable, Provider
from warden.retry import CircuitBreaker
from warden.store import Store
from warden.store.rows import PlannedAction
from warden.store.store import batched

log = structlog.get_logger(__name__)

DISRUPTIVE = frozenset({Verb.STOP, Verb.RESUME, Verb.KILL_SWITCH, Verb.RELEASE})
T = TypeVar("T")
NOTES_BATCH = 1000  # decisions recorded per transaction


@dataclass(slots=True)
class CycleOutcome:
    """What one provider's cycle did, for logs, the demo and tests."""

    done: list[Decision] = field(default_factory=list)
    planned: list[Decision] = field(default_factory=list)
    failed: list[tuple[Decision, str]] = field(default_factory=list)
    held: list[tuple[Decision, str]] = field(default_factory=list)  # told: a rail, a skip
    deferred: list[tuple[Decision, str]] = field(default_factory=list)  # quiet: a later cycle
    warned: list[Decision] = field(default_factory=list)
    cleared: list[Decision] = field(default_factory=list)
    # What a throttle replaced, by workspace: kept by its budget to restore at the reset.
    replaced: dict[WorkspaceId, dict[str, Any]] = field(default_factory=dict)
    # Failures that were held (Retry-After), not sent: no failure counted.
    unsent: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)  # the platform's answer was refused
    retry_after: dict[int, Any] = field(default_factory=dict)  # id(decision) → timedelta


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
    store: Store  # the cycle's (fenced) view of the store
    first_failure: Callable[[Decision], bool] = lambda _d: True  # tell this failure?
    lease_check: Callable[[], object] = lambda: None  # raises when the lease has lapsed
    # Facts an action's event carries beyond the decision's, by id(decision).
    notes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


class LinkMaker(Protocol):
    """Adds links (explain, snooze) to a warning's event data."""

    def for_warning(self, decision: Decision) -> dict[str, Any]: ...


class Actuator:
    """Applies one cycle's decisions for one provider."""

    def __init__(self, *, links: LinkMaker | None = None) -> None:
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
        # In batches: a first cycle over 100k workspaces warns thousands, and each
        # warning's event is built, written and let go with its batch (each warning
        # and its event still commit together).
        for batch in batched(decisions, NOTES_BATCH):
            await self._record_notes(cycle, batch, outcome)
        acts = [d for d in decisions if d.kind is DecisionKind.ACT and d.verb is not Verb.NOTIFY]
        for batch in batched([d for d in acts if is_dry(cycle, d)], NOTES_BATCH):
            await self._record_plans(cycle, batch, outcome)
        if outcome.warned:
            log.info("workspaces.warned", count=len(outcome.warned))
        for decision in acts:
            if not is_dry(cycle, decision):
                with structlog.contextvars.bound_contextvars(
                    workspace=str(decision.workspace), policy=decision.policy
                ):
                    await self.act(cycle, decision, outcome)
        return outcome

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
                extra = self._links.for_warning(d) if self._links else {}
                event = ev.decision_event(d, now=cycle.now, extra=extra)
                warnings.append((d.workspace, _warning(d, cycle.now, event_id=event.id)))
                saved_events.append(event)
                outcome.warned.append(d)
            elif d.kind is DecisionKind.ACT and d.verb is Verb.NOTIFY:
                # Remembered as a warning already due, so that it is told once.
                warnings.append((d.workspace, _warning(d, cycle.now, due_at=cycle.now)))
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
            await cycle.store.save_warnings(warnings, saved_events)
        if cleared:
            await cycle.store.clear_warnings(cleared, cleared_events)

    async def _record_plans(
        self, cycle: Cycle, decisions: Sequence[Decision], outcome: CycleOutcome
    ) -> None:
        """Dry run: each planned action is recorded and told once, all in one write."""
        plans, by_key = [], {}
        for d in decisions:
            assert d.verb is not None
            key = key_of(cycle, d, dry_run=True)
            plans.append(
                PlannedAction(
                    key=key, ws=d.workspace, policy=d.policy, verb=d.verb, reason=d.reason
                )
            )
            by_key[key] = d

        def told(key: str) -> Event:  # only a new plan is told: built for those alone
            data = ev.decision_data(by_key[key]) | {"idempotency_key": key, "dry_run": True}
            return ev.new_event(
                ev.ACTION_PLANNED, str(by_key[key].workspace), now=cycle.now, data=data
            )

        for key in await cycle.store.record_plans(plans, cycle.now, told):
            outcome.planned.append(by_key[key])

    async def act(self, cycle: Cycle, decision: Decision, outcome: CycleOutcome) -> None:
        """One real action: journal it, read again, check the lease, perform, record.

        While the provider's circuit is open (it failed `threshold` times in a row, in
        this cycle or before), nothing is sent: the action waits, quietly, for a cycle
        after the cooldown."""
        if not self.breaker(cycle.provider.name).allows(cycle.now):
            outcome.deferred.append((decision, "the provider is failing: its circuit is open"))
            return
        key = key_of(cycle, decision, dry_run=False)
        assert decision.verb is not None
        started = await cycle.store.begin_action(
            key=key,
            ws=decision.workspace,
            policy=decision.policy,
            verb=decision.verb,
            reason=decision.reason,
            now=cycle.now,
            dry_run=False,
            events=[],
            details=details_of(decision),
        )
        if not started:
            log.debug("action.already_recorded", key=key)
            return  # done already under this key, or pending: recovery settles it
        await self.send(cycle, decision, key, outcome)

    async def send(self, cycle: Cycle, decision: Decision, key: str, outcome: CycleOutcome) -> None:
        """The journalled action's fresh read, platform call and finish (also used by
        recovery to send again under the same key)."""
        breaker = self.breaker(cycle.provider.name)
        error, result = await self._execute(cycle, decision, breaker, outcome)
        data = ev.decision_data(decision) | {"idempotency_key": key, "dry_run": False}
        data |= dict(cycle.notes.get(id(decision), {}))
        if result is not None:
            outcome.replaced[decision.workspace] = result
            data |= {"replaced": result}
        await self._finish(cycle, decision, key, data, error, outcome)

    async def _execute(
        self, cycle: Cycle, decision: Decision, breaker: CircuitBreaker, outcome: CycleOutcome
    ) -> tuple[str | None, dict[str, Any] | None]:
        """Carry out the action: (None, what it returns) on success, else (why not, None).

        A lapsed lease (`cycle.lease_check`) is not caught here: the cycle stops acting.
        """
        try:
            fresh = await cycle.provider.refresh(decision.workspace.native, now=cycle.now)
            mem = cycle.memory.get(decision.workspace, EMPTY_MEMORY)
            why_not = still_stands(
                cycle.rules, decision, fresh, mem, now=cycle.now, since=cycle.since
            )
            if why_not is not None:
                return f"skipped: {why_not}", None
            cycle.lease_check()
            result = await perform(cycle.provider, decision, fresh)
        except ProviderUnavailable as e:
            held = e.held  # a Retry-After hold: nothing was sent
            if held:
                outcome.unsent.add(id(decision))
            if e.retry_after is not None:
                outcome.retry_after[id(decision)] = e.retry_after
            if not held and breaker.record_failure(cycle.now):
                log.warning("provider.circuit_opened", provider=cycle.provider.name)
            return str(e), None
        except Unauthorized as e:
            if e.status == 403:  # a scope or plan the platform says is missing
                self.degraded[_degradation(cycle, decision)] = e.missing or "a permission"
            return str(e), None
        except BadAnswer as e:  # malformed, a redirect refused, too large: never "done"
            outcome.refused.add(id(decision))
            return str(e), None
        except ProviderError as e:
            return str(e), None
        breaker.record_success()
        return None, result

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
        events: list[Event] = []
        if error is None:
            events.append(
                ev.new_event(ev.DONE_BY_VERB[decision.verb], ref, now=cycle.now, data=data)
            )
            result = "succeeded"
            outcome.done.append(decision)
            log.info("action.succeeded", action=str(decision.verb), reason=decision.reason)
        elif error.startswith("skipped:"):
            events.append(
                ev.new_event(ev.WORKSPACE_SKIPPED, ref, now=cycle.now, data=data | {"error": error})
            )
            result = "skipped"
            outcome.held.append((decision, error))
            log.info("action.skipped", action=str(decision.verb), why=error)
        else:
            result = "failed"
            outcome.failed.append((decision, error))
            log.warning("action.failed", action=str(decision.verb), error=error)
            if id(decision) not in outcome.unsent and cycle.first_failure(decision):
                events.extend(self._failure_events(cycle, decision, data, error))
                if id(decision) in outcome.refused:
                    events.append(_refused_event(cycle, decision, error))
        await cycle.store.finish_action(
            key, outcome=result, error=error, now=cycle.now, events=events
        )

    def _failure_events(
        self, cycle: Cycle, decision: Decision, data: dict[str, Any], error: str
    ) -> list[Event]:
        """The failure, told once per episode; a degraded policy and a refused answer too."""
        ref = str(decision.workspace)
        events = [ev.new_event(ev.ACTION_FAILED, ref, now=cycle.now, data=data | {"error": error})]
        missing = self.degraded.get(_degradation(cycle, decision))
        if missing is not None:
            events.append(_degraded_event(cycle, decision, missing, error))
        return events


def is_dry(cycle: Cycle, decision: Decision) -> bool:
    return decision.dry_run or cycle.dry_run


def _warning(
    decision: Decision,
    now: datetime,
    *,
    due_at: datetime | None = None,
    event_id: str | None = None,
) -> Warning:
    due = due_at or decision.due_at
    assert due is not None
    assert decision.verb is not None
    return Warning(
        policy=decision.policy, verb=decision.verb, warned_at=now, due_at=due, event_id=event_id
    )


def _degradation(cycle: Cycle, decision: Decision) -> tuple[str, str, str]:
    return (cycle.provider.name, decision.policy, str(decision.verb))


def _refused_event(cycle: Cycle, decision: Decision, error: str) -> Event:
    """The platform answered an action with something Warden does not accept."""
    ref = str(decision.workspace)
    data = {"provider": cycle.provider.name, "workspace": ref, "reason": error}
    return ev.new_event(ev.PROVIDER_ANSWER_REJECTED, ref, now=cycle.now, data=data)


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
    """A real stop, resume or kill switch (not planned in a dry run) is what the rails count."""
    return (
        decision.kind is DecisionKind.ACT
        and decision.verb in DISRUPTIVE
        and not (decision.dry_run or dry_run)
    )


def key_of(cycle: Cycle, decision: Decision, *, dry_run: bool) -> str:
    return idempotency_key(
        decision,
        cycle.memory.get(decision.workspace, EMPTY_MEMORY),
        cycle.snapshots.get(decision.workspace),
        dry_run=dry_run,
    )


def idempotency_key(decision: Decision, mem: Memory, ws: Workspace | None, *, dry_run: bool) -> str:
    """One action per workspace, policy, verb and episode: a running period, a stop, a config."""
    assert decision.verb is not None
    if "episode" in decision.facts:  # a budget's throttle or undo: once per window
        episode = str(decision.facts["episode"])
    elif decision.verb in (Verb.RESUME, Verb.RELEASE):
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


def details_of(decision: Decision) -> dict[str, Any]:
    """What a pending action's row keeps so that recovery can finish or repeat it."""
    details: dict[str, Any] = {"facts": dict(decision.facts)}
    if decision.extend_to is not None:
        details["extend_to"] = decision.extend_to.isoformat()
    return details


def lifecycle_to_write(provider: str, decision: Decision, fresh: Workspace) -> dict[str, Any]:
    """The policy's fields merged into the *fresh* read's config, not the cycle's older one:
    the platform replaces the whole config, so a hook added since the poll must be kept."""
    current = current_lifecycle(fresh)
    if current is None:  # the recheck needs it known; never send a config built on nothing
        raise ProviderError(provider, f"configure {fresh.ref}: the lifecycle config is unknown")
    return merge_lifecycle(current, decision.facts["wanted"])


async def perform(provider: Provider, decision: Decision, ws: Workspace) -> dict[str, Any] | None:
    """The platform call; what it returns to keep (a throttle's replaced limits), if any."""
    verb = decision.verb
    if verb is Verb.STOP:
        await provider.stop(ws)
    elif verb is Verb.RESUME:
        await provider.start(ws)
    elif verb in (Verb.KILL_SWITCH, Verb.RELEASE) and isinstance(provider, KillSwitchCapable):
        await provider.set_kill_switch(verb is Verb.KILL_SWITCH)
    elif verb is Verb.EXTEND:
        assert decision.extend_to is not None
        await provider.extend(ws, decision.extend_to)
    elif verb is Verb.THROTTLE and isinstance(provider, LimitsCapable):
        limits = decision.facts["throttle"]
        replaced = await provider.throttle(
            max_concurrent_runs=_maybe(int, limits.get("max_concurrent_runs")),
            daily_budget_usd=_maybe(Decimal, limits.get("daily_budget_usd")),
            user_daily_budget_usd=_maybe(Decimal, limits.get("user_daily_budget_usd")),
        )
        return replaced.to_json()
    elif verb is Verb.RESTORE and isinstance(provider, LimitsCapable):
        await provider.restore(Replaced.from_json(decision.facts["replaced"]))
    elif verb is Verb.CONFIGURE and isinstance(provider, LifecycleCapable):
        await provider.patch_lifecycle(ws, lifecycle_to_write(provider.name, decision, ws))
    else:
        raise ValueError(f"no platform action for {verb} on {provider.name}")
    return None


def _maybe(kind: Callable[[str], T], value: str | None) -> T | None:
    return None if value is None else kind(value)
