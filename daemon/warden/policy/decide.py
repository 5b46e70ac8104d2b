"""decide(): policies + snapshots + memory + now → decisions. Pure: no I/O, no clock.

Every decision carries the facts that justify it. When a fact is missing or stale the
answer is "do nothing" (a SKIP that says why), never a stop.

Conflicts between policies on one workspace resolve by one rule, the most protective
wins: an extension beats a stop; among stops, a schedule's stop wins (Warden will undo
it at opening); warnings, clears, notifications and lifecycle writes all pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from warden.model import (
    EMPTY_MEMORY,
    NOTHING,
    Decision,
    DecisionKind,
    Memory,
    State,
    Verb,
    Workspace,
    WorkspaceId,
)
from warden.policy.durations import format_duration
from warden.policy.lifecycle import changes, current_lifecycle, merge_lifecycle, termination_of
from warden.policy.models import GlobalSettings, Policy, Schedule
from warden.policy.schedule import edges_between, is_open, next_edge
from warden.policy.selector import covers


@dataclass(frozen=True, slots=True)
class Rules:
    """What decide() needs from a loaded policy set."""

    policies: Sequence[Policy]
    schedules: Mapping[str, Schedule]
    settings: GlobalSettings


def sample_window(rules: Rules) -> timedelta | None:
    """How far back utilisation samples matter to these rules; None if no rule uses them."""
    windows = [
        p.when.for_ + (p.extend.by * p.extend.max if p.extend else timedelta(0))
        for p in rules.policies
        if p.when is not None and p.when.for_ is not None
    ]
    return max(windows) + rules.settings.max_staleness if windows else None


def next_due(
    rules: Rules,
    workspaces: Sequence[Workspace],
    memory: Mapping[WorkspaceId, Memory],
    *,
    now: datetime,
) -> datetime | None:
    """The earliest moment after `now` at which a decision changes without new facts.

    A warning falling due (or its snooze ending), an idle or lifetime limit being
    reached (less the warning's lead): the daemon runs a cycle then, not at the next poll.
    """
    return min(due_times(rules, workspaces, memory, now=now).values(), default=None)


def due_times(
    rules: Rules,
    workspaces: Sequence[Workspace],
    memory: Mapping[WorkspaceId, Memory],
    *,
    now: datetime,
) -> dict[WorkspaceId, datetime]:
    """For each workspace whose decision changes after `now` without new facts, when
    (a warning's deadline, pushed by a snooze or a keep-alive; a limit's crossing)."""
    found: dict[WorkspaceId, datetime] = {}
    by_name = {p.name: p for p in rules.policies}
    for ws in workspaces:
        mem = memory.get(ws.id, EMPTY_MEMORY)
        moments: list[datetime] = []
        for w in mem.warnings.values():
            policy = by_name.get(w.policy)
            held = kept_alive_until(policy, mem, now) if policy is not None else None
            moments.append(max(w.due_at, mem.snoozed_until or w.due_at, held or w.due_at))
        if ws.state is State.RUNNING:
            moments.extend(_crossings(rules, ws, mem, now=now))
        later = [t for t in moments if t > now]
        if later:
            found[ws.id] = min(later)
    return found


def _crossings(rules: Rules, ws: Workspace, mem: Memory, *, now: datetime) -> list[datetime]:
    """When each idle or lifetime policy covering `ws` would warn (or act) if nothing changes."""
    found = []
    for policy in rules.policies:
        if policy.when is None or policy.when.metric is not None or not covers(policy, ws):
            continue
        measure = measure_of(policy, ws, mem, now=now, max_gap=rules.settings.max_staleness)
        if measure is not None:
            lead = policy.warn_before or timedelta(0)
            found.append(now + (measure.limit - lead - measure.value))
            if (held := kept_alive_until(policy, mem, now)) is not None:
                found.append(held - lead)  # the warning (or the stop) a keep-alive put off
    return found


def kept_alive_until(policy: Policy, mem: Memory, now: datetime) -> datetime | None:
    """Until when a keep-alive in force now holds `policy`'s stop; None when none does.

    Only idle and utilisation policies respect one, each for at most its own
    `keep_alive.max` after the keep-alive was asked for.
    """
    if not policy.respects_keep_alive:
        return None
    held = policy.keep_alive.held_until(mem.kept_alive_at, mem.kept_alive_until)
    return held if held is not None and held > now else None


def decide(
    rules: Rules,
    workspaces: Sequence[Workspace],
    memory: Mapping[WorkspaceId, Memory],
    *,
    now: datetime,
    since: datetime | None,
) -> list[Decision]:
    """All decisions for one cycle. `since` is the previous cycle's `now` (None at first)."""
    decisions: list[Decision] = []
    for ws in workspaces:
        mem = memory.get(ws.id, EMPTY_MEMORY)
        candidates = [
            decision
            for policy in rules.policies
            if covers(policy, ws)
            for decision in [decide_policy(rules, policy, ws, mem, now=now, since=since)]
            if decision is not None
        ]
        decisions.extend(resolve_conflicts(candidates, rules))
    return decisions


def decide_policy(
    rules: Rules,
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    *,
    now: datetime,
    since: datetime | None,
) -> Decision | None:
    """One policy's view of one workspace."""
    dry_run = policy.dry_run or rules.settings.dry_run
    if policy.lifecycle is not None:
        decision = decide_lifecycle(policy, ws, now=now, settings=rules.settings)
    elif policy.schedule is not None:
        schedule = rules.schedules[policy.schedule]
        decision = decide_schedule(policy, schedule, ws, mem, now=now, since=since)
    else:
        decision = decide_trigger(policy, ws, mem, now=now, settings=rules.settings)
    if decision is None or not dry_run:
        return decision
    return _with(decision, dry_run=True)


# ---------------------------------------------------------------- when: idle_for / running_for


@dataclass(frozen=True, slots=True)
class Measure:
    """How far a workspace is along a trigger, and where the line is."""

    trigger: str  # "idle_for", "running_for", "gpu_below" or "cpu_below"
    value: timedelta
    limit: timedelta  # the threshold, pushed by the extensions used so far
    below: Decimal | None = None  # gpu_below/cpu_below: the percentage it stays under

    def due_at(self, now: datetime) -> datetime:
        return now + (self.limit - self.value)

    def reached(self) -> str:
        """The rule and the fact, as a reason: `gpu_below 5% for 21s ≥ 20s`; a warning
        ahead of the limit says how near it is: `idle_for 29m40s of 30m`."""
        under = f" {self.below}% for" if self.below is not None else ""
        relation = "≥" if self.value >= self.limit else "of"
        value, limit = format_duration(self.value), format_duration(self.limit)
        return f"{self.trigger}{under} {value} {relation} {limit}"


def decide_trigger(
    policy: Policy, ws: Workspace, mem: Memory, *, now: datetime, settings: GlobalSettings
) -> Decision | None:
    """Idle and lifetime policies: warn, then act, extending first where the policy says."""
    warning = mem.warnings.get(policy.name)
    if ws.state is not State.RUNNING or ws.transitioning:
        if warning is not None and not ws.transitioning:
            return _decision(DecisionKind.CLEAR, policy, ws, reason=f"workspace is {ws.state}")
        return None
    measure = measure_of(policy, ws, mem, now=now, max_gap=settings.max_staleness)
    if measure is None:
        return _skip(policy, ws, "activity unknown: the platform did not say", warning is not None)
    if now - ws.observed_at > settings.max_staleness:
        return _skip(policy, ws, "facts are stale", True)
    if warning is None and measure.value < measure.limit - (policy.warn_before or timedelta(0)):
        return None  # far from the limit, nothing to clear: most of a fleet, with no facts built

    # Built only for a decision that carries them: a warned workspace waiting for its
    # due time (most of a quiet fleet's cycle) needs none.
    def facts() -> dict[str, Any]:
        return measure_facts(measure, ws, mem, policy)

    if policy.do is Verb.NOTIFY:
        return _notify_once(policy, ws, mem, measure, facts)
    extension = _extension(policy, ws, mem, measure, now=now, facts=facts)
    if extension is not None or policy.do is Verb.EXTEND:
        return extension
    return _warn_then_stop(policy, ws, mem, measure, now=now, facts=facts)


def measure_of(
    policy: Policy, ws: Workspace, mem: Memory, *, now: datetime, max_gap: timedelta
) -> Measure | None:
    assert policy.when is not None
    used = mem.extensions_used.get(policy.name, 0)
    pushed = policy.extend.by * min(used, policy.extend.max) if policy.extend else timedelta(0)
    if policy.when.idle_for is not None:
        idle = ws.idle_for(now)
        return None if idle is None else Measure("idle_for", idle, policy.when.idle_for + pushed)
    if policy.when.metric is not None:
        return _utilisation_measure(policy, ws, mem, pushed=pushed, now=now, max_gap=max_gap)
    assert policy.when.running_for is not None
    started = _earliest(ws.started_at, mem.running_since)
    if started is None:
        return None
    return Measure(
        "running_for", max(now - started, timedelta(0)), policy.when.running_for + pushed
    )


def _utilisation_measure(
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    *,
    pushed: timedelta,
    now: datetime,
    max_gap: timedelta,
) -> Measure | None:
    assert policy.when is not None
    metric = policy.when.metric
    threshold = policy.when.gpu_below if metric == "gpu" else policy.when.cpu_below
    assert metric is not None
    assert threshold is not None
    assert policy.when.for_ is not None
    limit = policy.when.for_ + pushed
    below = time_below(mem.samples.get(metric, ()), threshold, now=now, max_gap=max_gap, need=limit)
    return None if below is None else Measure(f"{metric}_below", below, limit, threshold)


def time_below(
    samples: Sequence[tuple[datetime, Decimal | None]],
    threshold: Decimal,
    *,
    now: datetime,
    max_gap: timedelta,
    need: timedelta,
) -> timedelta | None:
    """How long the samples have stayed under `threshold`, ending at the newest one.

    None (unknown) when the newest sample is missing or stale, or when the run under
    the threshold is cut short of `need` by a gap or an unknown sample rather than by
    a sample at or over it: too few or patchy samples never justify a stop.
    """
    if not samples:
        return None
    newest_at, newest = samples[-1]
    if newest is None or now - newest_at > max_gap:
        return None
    if newest >= threshold:
        return timedelta(0)
    start = newest_at
    for at, value in reversed(samples[:-1]):
        if value is not None and value >= threshold:
            return newest_at - start
        if value is None or start - at > max_gap:
            break
        start = at
    run = newest_at - start
    return run if run >= need else None


def _extension(
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    measure: Measure,
    *,
    now: datetime,
    facts: Callable[[], dict[str, Any]],
) -> Decision | None:
    """Push the platform's deadline instead of stopping, while extensions remain."""
    if policy.extend is None or measure.value < measure.limit:
        return None
    if mem.extensions_used.get(policy.name, 0) >= policy.extend.max:
        return None
    until = max(ws.deadline or now, now) + policy.extend.by
    if ws.max_deadline is not None:
        until = min(until, ws.max_deadline)
    if until <= now:
        return None  # the platform allows no more: fall through to the stop
    return _decision(
        DecisionKind.ACT,
        policy,
        ws,
        verb=Verb.EXTEND,
        reason=f"{measure.trigger} reached {format_duration(measure.limit)}: extending",
        extend_to=until,
        facts=facts() | {"extend_to": until.isoformat()},
    )


def _warn_then_stop(
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    measure: Measure,
    *,
    now: datetime,
    facts: Callable[[], dict[str, Any]],
) -> Decision | None:
    warning = mem.warnings.get(policy.name)
    lead = policy.warn_before or timedelta(0)
    if measure.value < measure.limit - lead:
        if warning is None:
            return None
        return _decision(DecisionKind.CLEAR, policy, ws, reason="activity resumed", facts=facts())
    held = kept_alive_until(policy, mem, now)
    if held is not None and now < held - lead:
        # In use, its owner says: no warning until the keep-alive's end draws near.
        if warning is None:
            return None
        why = f"kept alive until {held.isoformat()}"
        return _decision(DecisionKind.CLEAR, policy, ws, reason=why, facts=facts())
    if policy.warn_before is not None and warning is None:
        due = max(measure.due_at(now), now + policy.warn_before, held or now)
        return _decision(
            DecisionKind.WARN,
            policy,
            ws,
            verb=policy.do,
            reason=measure.reached(),
            due_at=due,
            facts=facts(),
        )
    due = max(warning.due_at if warning else now, mem.snoozed_until or now, held or now)
    if now < due or measure.value < measure.limit:
        if mem.snoozed_until is not None and mem.snoozed_until > now:
            return _skip(policy, ws, f"snoozed until {mem.snoozed_until.isoformat()}", True)
        return None  # warned, waiting for its due time: no facts, no reason built
    return _stop_unless_busy(policy, ws, reason=measure.reached(), facts=facts())


def _notify_once(
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    measure: Measure,
    facts: Callable[[], dict[str, Any]],
) -> Decision | None:
    """`do: notify` tells once per episode; the warning record remembers that it did."""
    told = policy.name in mem.warnings
    if measure.value < measure.limit:
        return (
            _decision(DecisionKind.CLEAR, policy, ws, reason="back under", facts=facts())
            if told
            else None
        )
    if told:
        return None
    reason = measure.reached()
    return _decision(DecisionKind.ACT, policy, ws, verb=Verb.NOTIFY, reason=reason, facts=facts())


def measure_facts(measure: Measure, ws: Workspace, mem: Memory, policy: Policy) -> dict[str, Any]:
    """The facts behind a trigger decision, JSON-ready, for events and explain."""
    facts: dict[str, Any] = {
        measure.trigger: format_duration(measure.value),
        "limit": format_duration(measure.limit),
        "observed_at": ws.observed_at.isoformat(),
        "state": str(ws.state),
    }
    if measure.below is not None:
        facts["below"] = f"{measure.below}%"
    if ws.last_active_at is not None:
        facts["last_active_at"] = ws.last_active_at.isoformat()
    if policy.extend is not None:
        facts["extensions_used"] = mem.extensions_used.get(policy.name, 0)
        facts["extensions_max"] = policy.extend.max
    if (warning := mem.warnings.get(policy.name)) is not None:
        facts["warned_at"] = warning.warned_at.isoformat()
        facts["due_at"] = warning.due_at.isoformat()
    if mem.snoozed_until is not None:
        facts["snoozed_until"] = mem.snoozed_until.isoformat()
    if (held := kept_alive_until(policy, mem, ws.observed_at)) is not None:
        facts["kept_alive_until"] = held.isoformat()
    return facts


# ---------------------------------------------------------------- schedules


def decide_schedule(
    policy: Policy,
    schedule: Schedule,
    ws: Workspace,
    mem: Memory,
    *,
    now: datetime,
    since: datetime | None,
) -> Decision | None:
    """Act at the schedule's edges only: stop at closing, resume at opening what we stopped.

    A workspace someone starts while closed is theirs until the next edge.
    """
    edges = edges_between(schedule, since, now) if since is not None else []
    last = edges[-1] if edges else None
    facts = {"schedule": policy.schedule, "open": is_open(schedule, now)}
    if ws.transitioning:
        return None
    if ws.state is State.STOPPED:
        if last is not None and last.opening and mem.stopped_by == policy.name and facts["open"]:
            return _decision(
                DecisionKind.ACT, policy, ws, verb=Verb.RESUME, reason="opening", facts=facts
            )
        return None
    warning = mem.warnings.get(policy.name)
    if ws.state is not State.RUNNING:
        return (
            _decision(DecisionKind.CLEAR, policy, ws, reason=f"workspace is {ws.state}")
            if warning
            else None
        )
    if warning is not None:
        return _closing_due(policy, ws, mem, warning.due_at, now=now, facts=facts)
    if last is not None and not last.opening and now - last.at <= schedule.misfire_grace:
        if policy.warn_before is not None:  # the edge came before any warning: warn late
            return _decision(
                DecisionKind.WARN,
                policy,
                ws,
                verb=policy.do,
                reason="closing",
                due_at=now + policy.warn_before,
                facts=facts,
            )
        return _closing_due(policy, ws, mem, last.at, now=now, facts=facts)
    return _closing_soon(policy, schedule, ws, now=now, facts=facts)


def _closing_due(
    policy: Policy,
    ws: Workspace,
    mem: Memory,
    due: datetime,
    *,
    now: datetime,
    facts: dict[str, Any],
) -> Decision | None:
    due = max(due, mem.snoozed_until or due)
    if not facts["open"] and now >= due:
        return _stop_unless_busy(policy, ws, reason="closed", facts=facts)
    if facts["open"]:
        return _decision(DecisionKind.CLEAR, policy, ws, reason="open again", facts=facts)
    return None


def _closing_soon(
    policy: Policy, schedule: Schedule, ws: Workspace, *, now: datetime, facts: dict[str, Any]
) -> Decision | None:
    if policy.warn_before is None or not facts["open"]:
        return None
    edge = next_edge(schedule, now)
    if edge is None or edge.opening or edge.at - now > policy.warn_before:
        return None
    return _decision(
        DecisionKind.WARN,
        policy,
        ws,
        verb=policy.do,
        reason="closing soon",
        due_at=edge.at,
        facts=facts | {"closes_at": edge.at.isoformat()},
    )


# ---------------------------------------------------------------- lifecycle settings

# Mage's lifecycle config can be written in these states; in any other the platform
# cannot say what the workspace is, and Warden patches nothing on a guess.
_CONFIGURABLE = frozenset({State.RUNNING, State.STOPPED})


def decide_lifecycle(
    policy: Policy, ws: Workspace, *, now: datetime, settings: GlobalSettings
) -> Decision | None:
    """Keep the platform's lifecycle settings as the policy writes them: act only on a difference.

    The decision carries the whole merged config; an unreported config is unknown and
    left alone, and a config already as written gives nothing (no patch every cycle).
    """
    assert policy.lifecycle is not None
    current = current_lifecycle(ws)
    if current is None or ws.transitioning or ws.state not in _CONFIGURABLE:
        return None
    wanted = policy.lifecycle.termination_policy()
    merged = merge_lifecycle(current, wanted)
    if merged == current:
        return None
    if now - ws.observed_at > settings.max_staleness:
        return _skip(policy, ws, "facts are stale", True)
    facts = {
        "wanted": wanted,
        "current": termination_of(current),
        "lifecycle_config": merged,
        "observed_at": ws.observed_at.isoformat(),
        "state": str(ws.state),
    }
    reason = "lifecycle settings differ: " + ", ".join(changes(current, wanted))
    return _decision(DecisionKind.ACT, policy, ws, verb=Verb.CONFIGURE, reason=reason, facts=facts)


# ---------------------------------------------------------------- conflicts and helpers


def resolve_conflicts(candidates: list[Decision], rules: Rules) -> list[Decision]:
    """At most one state-changing action per workspace; the most protective one wins.

    A notification or a lifecycle write changes no run state: it passes beside a stop.
    """
    changing = [
        d
        for d in candidates
        if d.kind is DecisionKind.ACT and d.verb not in (Verb.NOTIFY, Verb.CONFIGURE)
    ]
    if len(changing) <= 1:
        return candidates
    winner = min(changing, key=lambda d: _protection_rank(d, rules))
    losers = {id(d) for d in changing if d is not winner}
    return [d for d in candidates if id(d) not in losers]


def _protection_rank(decision: Decision, rules: Rules) -> int:
    if decision.verb is Verb.EXTEND:
        return 0
    if decision.verb is Verb.RESUME:
        return 1
    by_name = {p.name: p for p in rules.policies}
    return 2 if by_name[decision.policy].schedule is not None else 3


def _stop_unless_busy(
    policy: Policy, ws: Workspace, *, reason: str, facts: Mapping[str, Any]
) -> Decision:
    """Never kill real work: a workspace the platform reports busy is held, whatever the rule."""
    if ws.busy:
        return _decision(
            DecisionKind.SKIP, policy, ws, reason="real work is running (the platform says busy)"
        )
    return _decision(DecisionKind.ACT, policy, ws, verb=policy.do, reason=reason, facts=facts)


def _decision(
    kind: DecisionKind,
    policy: Policy,
    ws: Workspace,
    *,
    verb: Verb | None = None,
    reason: str,
    due_at: datetime | None = None,
    extend_to: datetime | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Decision:
    return Decision(
        kind=kind,
        workspace=ws.id,
        policy=policy.name,
        verb=verb,
        reason=reason,
        due_at=due_at,
        extend_to=extend_to,
        facts=facts if facts else NOTHING,  # measure_facts builds a fresh dict each time
    )


def _skip(policy: Policy, ws: Workspace, reason: str, worth_saying: bool) -> Decision | None:
    """A SKIP only where it changes an outcome; otherwise silence keeps the log readable."""
    return _decision(DecisionKind.SKIP, policy, ws, reason=reason) if worth_saying else None


def _with(decision: Decision, *, dry_run: bool) -> Decision:
    return replace(decision, dry_run=dry_run)


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return min(known) if known else None


# ---------------------------------------------------------------- right before acting

# What the platform must show for each verb to be worth sending (budget actions and
# actions recovered after a crash, which have no policy to ask again).
_WANTED_STATE = {
    Verb.STOP: State.RUNNING,
    Verb.KILL_SWITCH: State.RUNNING,
    Verb.RESUME: State.STOPPED,
    Verb.RELEASE: State.STOPPED,
}
# Under another name the same act: a kill switch is the agent-run platform's stop.
_POLICY_VERB = {Verb.KILL_SWITCH: Verb.STOP, Verb.RELEASE: Verb.RESUME}


def still_stands(
    rules: Rules,
    decision: Decision,
    fresh: Workspace,
    mem: Memory,
    *,
    now: datetime,
    since: datetime | None,
) -> str | None:
    """None when `decision` still stands on a fresh read of its workspace; else why not.

    A policy's action is decided again on the fresh facts (the same rule, the same
    memory); a budget's needs the workspace in the state it acts on. Never mid-build.
    """
    if fresh.transitioning:
        return f"an operation is in flight ({fresh.state})"
    policy = next((p for p in rules.policies if p.name == decision.policy), None)
    if policy is None:  # a budget's action: its spend was judged this cycle
        wanted = _WANTED_STATE.get(decision.verb)  # type: ignore[arg-type]
        if wanted is not None and fresh.state is not wanted:
            return f"a fresh read no longer justifies it ({fresh.state})"
        return None
    again = decide_policy(rules, policy, fresh, mem, now=now, since=since)
    verb = _POLICY_VERB.get(decision.verb, decision.verb)  # type: ignore[arg-type]
    if again is None or again.kind is not DecisionKind.ACT or again.verb is not verb:
        return f"a fresh read no longer justifies it ({fresh.state})"
    return None


def effect_seen(decision: Decision, fresh: Workspace) -> bool:
    """Whether the platform already shows what `decision` asked for (crash recovery)."""
    verb = decision.verb
    if verb in (Verb.STOP, Verb.KILL_SWITCH):
        return fresh.state in (State.STOPPED, State.STOPPING)
    if verb in (Verb.RESUME, Verb.RELEASE):
        return fresh.state in (State.RUNNING, State.STARTING)
    if verb is Verb.EXTEND:
        return (
            decision.extend_to is not None
            and fresh.deadline is not None
            and (fresh.deadline >= decision.extend_to - timedelta(seconds=1))
        )
    if verb is Verb.CONFIGURE:
        return current_lifecycle(fresh) == decision.facts.get("lifecycle_config")
    return False


def kill_switch_names(decisions: Sequence[Decision]) -> list[Decision]:
    """On a platform whose stop is a kill switch, call the act by its name: it blocks
    every run there at once, and on-call must be able to tell that from a stop."""
    renamed = {Verb.STOP: Verb.KILL_SWITCH, Verb.RESUME: Verb.RELEASE}
    return [
        replace(d, verb=renamed[d.verb])
        if d.kind in (DecisionKind.ACT, DecisionKind.WARN) and d.verb in renamed
        else d
        for d in decisions
    ]
