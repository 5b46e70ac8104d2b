"""The safety rails: which of a cycle's decisions may act now, wait, or are held. Pure.

The decide stage says what should happen; the rails say whether it may happen now.
Each decision that acts meets them in this order, and the first that stops it says why:

1. a degraded policy (the platform lacks a scope or plan): held, told once already;
2. its backoff (a failing action waits 30 s, 1 min, 2 min, ... up to 1 h): waits;
3. its announcement: an action a warning announced waits until that warning was
   delivered to at least one of the sinks that should get it, or dead-lettered by all;
4. the surge rail: a policy that wants to stop or resume more workspaces in one cycle
   than `max(min_actions_per_cycle, max_percent_per_cycle of the running workspaces,
   surge_factor x the most it did in one cycle lately)` is held whole, told once
   (`warden.action.held`), until it asks for less or an admin releases it. A small
   team's closing schedule (2 of 3) passes: the floor is a few actions, not a share;
5. the pace: at most `max_actions_per_cycle` stops and resumes per provider and cycle;
   the rest wait for the next cycle, budgets' stops largest spender first.

Waiting is quiet (the next cycle asks again); only a hold is told, once per episode.
(The circuit breaker, which opens within a cycle, is the actuator's.)
Dry-run decisions are planned, not acted: no rail counts them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from warden.actuator import counts_toward_blast_radius
from warden.model import EMPTY_MEMORY, Decision, DecisionKind, Event, Memory, Verb, WorkspaceId
from warden.policy.models import GlobalSettings
from warden.store.deliveries import SinkState, Status
from warden.store.episodes import Hold, Retry, RetryKey
from warden.store.rows import StoredEvent


class Announced(StrEnum):
    """How a warning fared with the sinks that should get it."""

    NOBODY = "nobody"  # no sink wants it: nothing to wait for
    WAITING = "waiting"  # not delivered anywhere yet
    DELIVERED = "delivered"  # at least one sink acknowledged it
    DEAD = "dead_lettered"  # every sink that wanted it gave up


@dataclass(frozen=True, slots=True, kw_only=True)
class RailInputs:
    """What the rails need beyond the decisions, loaded once per cycle."""

    provider: str
    running: int  # running workspaces in the last complete listing
    usual: Mapping[str, int] = field(default_factory=dict)  # policy → most in one cycle lately
    holds: Mapping[str, Hold] = field(default_factory=dict)  # policy → hold in force
    retries: Mapping[RetryKey, Retry] = field(default_factory=dict)
    announced: Mapping[str, Announced] = field(default_factory=dict)  # warning event id →
    degraded: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    budget_names: frozenset[str] = frozenset()  # budgets trim at the pace; never surge-held


@dataclass(slots=True)
class RailsResult:
    """The decisions that go, wait or are held; the holds that begin and end."""

    go: list[Decision] = field(default_factory=list)
    waiting: list[tuple[Decision, str]] = field(default_factory=list)  # quiet
    held: list[tuple[Decision, str]] = field(default_factory=list)  # told (once)
    holds_begun: list[Hold] = field(default_factory=list)
    holds_ended: list[str] = field(default_factory=list)  # policies
    # How the announcing warning fared, by id(decision), for the action's event.
    notes: dict[int, dict[str, str]] = field(default_factory=dict)
    waits_for_delivery: bool = False  # a cycle soon, once the warning has gone out


def apply_rails(
    decisions: Sequence[Decision],
    inputs: RailInputs,
    settings: GlobalSettings,
    memory: Mapping[WorkspaceId, Memory],
    *,
    now: datetime,
) -> RailsResult:
    """Sort a cycle's decisions into go, waiting and held (see the module's docstring)."""
    result = RailsResult()
    acting: list[Decision] = []
    for d in decisions:
        if d.kind is not DecisionKind.ACT or d.verb is Verb.NOTIFY or d.dry_run:
            result.go.append(d)
            continue
        why = _one_at_a_time(d, inputs, memory, now, result)
        if why is None:
            acting.append(d)
        elif why.startswith("held:"):
            result.held.append((d, why.removeprefix("held: ")))
        else:
            result.waiting.append((d, why))
    acting = _surge(acting, inputs, settings, now, result)
    _pace(acting, settings, result)
    return result


def _one_at_a_time(
    d: Decision,
    inputs: RailInputs,
    memory: Mapping[WorkspaceId, Memory],
    now: datetime,
    result: RailsResult,
) -> str | None:
    """Rails 1 to 3, which judge a decision on its own; why it may not act, or None."""
    missing = inputs.degraded.get((inputs.provider, d.policy, str(d.verb)))
    if missing is not None:
        return f"held: policy degraded: the platform lacks {missing}"
    assert d.verb is not None
    retry = inputs.retries.get((d.workspace, d.policy, d.verb))
    if retry is not None and now < retry.next_attempt_at:
        return (
            f"backing off after {retry.failures} failure(s) until "
            f"{retry.next_attempt_at.isoformat()}"
        )
    warning = memory.get(d.workspace, EMPTY_MEMORY).warnings.get(d.policy)
    if warning is not None and warning.event_id is not None:
        announced = inputs.announced.get(warning.event_id, Announced.WAITING)
        if announced is Announced.WAITING:
            result.waits_for_delivery = True
            return "waiting until its warning has been delivered"
        if announced is not Announced.NOBODY:
            result.notes[id(d)] = {"warning": str(announced)}
    return None


def limit_for(policy: str, inputs: RailInputs, settings: GlobalSettings) -> int:
    """How many stops and resumes one policy may ask for in one cycle before it is held."""
    share = math.floor(inputs.running * settings.max_percent_per_cycle / 100)
    usual = settings.surge_factor * inputs.usual.get(policy, 0)
    return max(settings.min_actions_per_cycle, share, usual)


def _surge(
    acting: list[Decision],
    inputs: RailInputs,
    settings: GlobalSettings,
    now: datetime,
    result: RailsResult,
) -> list[Decision]:
    """Rail 4: a policy asking for far more than its share is held whole, until released."""
    wanted = Counter(
        d.policy
        for d in acting
        if counts_toward_blast_radius(d) and d.policy not in inputs.budget_names
    )
    reasons: dict[str, str] = {}
    for policy, count in wanted.items():
        limit = limit_for(policy, inputs, settings)
        hold = inputs.holds.get(policy)
        if count <= limit or (hold is not None and hold.released):
            continue  # within its share, or an admin let this episode act
        reasons[policy] = (
            hold.reason
            if hold is not None
            else f"{count} stops or resumes in one cycle exceed the limit of {limit}"
        )
        if hold is None:
            result.holds_begun.append(
                Hold(
                    provider=inputs.provider,
                    policy=policy,
                    since=now,
                    reason=reasons[policy],
                    wanted=count,
                    allowed=limit,
                )
            )
    still = set(reasons) | set(_released_and_wanting(inputs, wanted))
    result.holds_ended = sorted(set(inputs.holds) - still)
    kept = []
    for d in acting:
        if d.policy in reasons and counts_toward_blast_radius(d):
            result.held.append((d, reasons[d.policy]))
        else:
            kept.append(d)
    return kept


def _released_and_wanting(inputs: RailInputs, wanted: Mapping[str, int]) -> list[str]:
    """Released holds whose policy still asks for actions: the release lasts the episode."""
    return [p for p, hold in inputs.holds.items() if hold.released and wanted.get(p, 0) > 0]


def _pace(acting: list[Decision], settings: GlobalSettings, result: RailsResult) -> None:
    """Rail 5: at most `max_actions_per_cycle` disruptive actions go; the rest wait."""
    room = settings.max_actions_per_cycle
    for d in acting:
        if not counts_toward_blast_radius(d):
            result.go.append(d)
        elif room > 0:
            room -= 1
            result.go.append(d)
        else:
            result.waiting.append((d, f"over the pace of {settings.max_actions_per_cycle} a cycle"))


class Router(Protocol):
    """Which sinks an event goes to, and of what type each is (the dispatcher's routes)."""

    def sinks_for(self, event: Event) -> list[str]: ...
    def sink_type(self, sink: str) -> str | None: ...


def announcement(
    event: StoredEvent,
    statuses: Mapping[str, Status],
    sinks: Mapping[str, SinkState],
    router: Router,
) -> Announced:
    """How a warning fared with the sinks that should get it: the people's sinks (a log
    sink tells no one) that are switched on and whose cursor did not pass it by."""
    wanted = [
        name
        for name in router.sinks_for(event.event())
        if not _passed_by(sinks.get(name), event, name in statuses)
    ]
    people = [name for name in wanted if router.sink_type(name) != "log"] or wanted
    if not people:
        return Announced.NOBODY
    got = [statuses.get(name) for name in people]
    if Status.DELIVERED in got:
        return Announced.DELIVERED
    if all(status is Status.DEAD for status in got):
        return Announced.DEAD
    return Announced.WAITING


def _passed_by(state: SinkState | None, event: StoredEvent, queued: bool) -> bool:
    """A disabled sink, or one whose cursor went past the event without queuing it
    (configured after it), will never deliver it: nothing to wait for there."""
    if state is None:
        return False  # a new sink: routing reaches it within a round
    return state.disabled or (state.last_seq >= event.seq and not queued)
