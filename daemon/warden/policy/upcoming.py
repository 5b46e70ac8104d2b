"""What falls due next, and why: the status page's outlook. Pure: no I/O, no clock.

For each running workspace and each policy covering it: a warning's deadline (put off
by a snooze or a keep-alive), the moment an idle, lifetime or utilisation limit is
reached if nothing changes, a schedule's closing; and for each budget, when its burn
reaches the next threshold. Each item names the rule and the fact it stands on. It
reads what `decide()` reads and decides nothing: the cycle still has the last word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from warden.budget.evaluate import HUNDRED, Standing
from warden.model import EMPTY_MEMORY, Memory, State, Workspace, WorkspaceId
from warden.policy.decide import Measure, Rules, kept_alive_until, measure_of
from warden.policy.durations import format_duration
from warden.policy.models import Policy
from warden.policy.schedule import next_edge
from warden.policy.selector import covers

HORIZON = timedelta(hours=24)  # how far ahead the outlook looks
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """One thing that will happen unless something changes."""

    at: datetime
    kind: str  # warned, limit, schedule, budget
    subject: str  # a workspace's name (provider/id), a schedule's, a budget's scope
    action: str  # stop, notify, extend, kill_switch, ...
    policy: str
    rule: str  # what the policy says: "idle_for 2h (warns 15m before)"
    fact: str  # what it stands on: "idle for 1h52m, last active 08:13 UTC"
    owner: str = ""
    workspaces: tuple[str, ...] = field(default=())  # a schedule's: whom it stops


def upcoming(
    rules: Rules,
    snapshots: Sequence[Workspace],
    memory: Mapping[WorkspaceId, Memory],
    standings: Sequence[Standing] = (),
    *,
    now: datetime,
    horizon: timedelta = HORIZON,
) -> list[Due]:
    """Everything due within `horizon` of `now` (overdue items too), soonest first."""
    found: list[Due] = []
    closing: dict[tuple[str, datetime], list[Workspace]] = {}
    for ws in snapshots:
        if ws.state is not State.RUNNING:
            continue
        mem = memory.get(ws.id, EMPTY_MEMORY)
        for policy in rules.policies:
            if not covers(policy, ws):
                continue
            if policy.when is not None:
                if (item := _trigger_due(rules, policy, ws, mem, now)) is not None:
                    found.append(item)
            elif policy.schedule is not None:
                edge = next_edge(rules.schedules[policy.schedule], now)
                if edge is not None and not edge.opening:
                    closing.setdefault((policy.name, edge.at), []).append(ws)
    found.extend(_closings(rules, closing))
    found.extend(item for s in standings if (item := _budget_due(s, now)) is not None)
    return sorted((d for d in found if d.at <= now + horizon), key=lambda d: (d.at, d.subject))


def _trigger_due(
    rules: Rules, policy: Policy, ws: Workspace, mem: Memory, now: datetime
) -> Due | None:
    measure = measure_of(policy, ws, mem, now=now, max_gap=rules.settings.max_staleness)
    warning = mem.warnings.get(policy.name)
    held = kept_alive_until(policy, mem, now)
    if warning is not None:
        at = max(warning.due_at, mem.snoozed_until or warning.due_at, held or warning.due_at)
        kind = "warned"
    elif measure is not None:
        at = max(measure.due_at(now), held or now)
        kind = "limit"
    else:
        return None
    fact = _fact(measure, ws, now)
    if mem.snoozed_until is not None and mem.snoozed_until > now:
        fact += f"; snoozed until {mem.snoozed_until:%H:%M} UTC"
    if held is not None:
        fact += f"; kept alive until {held:%H:%M} UTC"
    action = str(warning.verb if warning is not None else policy.do)
    return Due(
        at=at,
        kind=kind,
        subject=ws.name,
        action=action,
        policy=policy.name,
        rule=_rule(policy),
        fact=fact,
        owner=ws.owner,
        workspaces=(str(ws.id),),
    )


def _rule(policy: Policy) -> str:
    when = policy.when
    assert when is not None
    if when.idle_for is not None:
        text = f"idle_for {format_duration(when.idle_for)}"
    elif when.running_for is not None:
        text = f"running_for {format_duration(when.running_for)}"
    else:
        assert when.for_ is not None
        below = when.gpu_below if when.gpu_below is not None else when.cpu_below
        text = f"{when.metric}_below {below}% for {format_duration(when.for_)}"
    if policy.warn_before is not None:
        text += f", warns {format_duration(policy.warn_before)} before"
    return text


def _fact(measure: Measure | None, ws: Workspace, now: datetime) -> str:
    if measure is None:
        return "the platform does not say (nothing happens while it does not)"
    what = {
        "idle_for": "idle for",
        "running_for": "running for",
        "gpu_below": "GPU below the line for",
        "cpu_below": "CPU below the line for",
    }[measure.trigger]
    text = f"{what} {format_duration(measure.value)}"
    if measure.trigger == "idle_for" and ws.last_active_at is not None:
        text += f", last active {ws.last_active_at:%H:%M} UTC"
    age = now - ws.observed_at
    if age > timedelta(minutes=1):
        text += f" (seen {format_duration(age)} ago)"
    return text


def _closings(rules: Rules, closing: Mapping[tuple[str, datetime], list[Workspace]]) -> list[Due]:
    """A schedule's closing, once per policy: it stops every running workspace it covers."""
    found = []
    by_name = {p.name: p for p in rules.policies}
    for (name, at), workspaces in closing.items():
        policy = by_name[name]
        assert policy.schedule is not None
        schedule = rules.schedules[policy.schedule]
        names = sorted(ws.name for ws in workspaces)
        found.append(
            Due(
                at=at,
                kind="schedule",
                subject=f"schedule {policy.schedule}",
                action=str(policy.do),
                policy=name,
                rule=f"open {', '.join(schedule.open)} ({schedule.timezone})",
                fact=f"{len(names)} running: {', '.join(names[:5])}"
                + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
                workspaces=tuple(sorted(str(ws.id) for ws in workspaces)),
            )
        )
    return found


def _budget_due(standing: Standing, now: datetime) -> Due | None:
    """When the scope's burn reaches the budget's next threshold, if before the reset."""
    fired = set(standing.state.fired if standing.state else ()) | set(standing.fired)
    for index, threshold in enumerate(standing.budget.thresholds):
        if index in fired or threshold.forecast:
            continue
        line = standing.limit * threshold.at / HUNDRED
        if standing.spent >= line:
            continue
        if standing.burn_per_hour <= 0:
            return None
        hours = (line - standing.spent) / standing.burn_per_hour
        at = now + timedelta(seconds=float(hours * 3600))
        if at >= standing.window.end:
            return None
        return Due(
            at=at,
            kind="budget",
            subject=f"{standing.budget.name}: {standing.scope}",
            action=threshold.do,
            policy=standing.budget.name,
            rule=f"{threshold.at}% of ${standing.limit.quantize(CENT)} per "
            f"{standing.budget.budget.window} ({standing.budget.budget.timezone})",
            fact=f"${standing.spent.quantize(CENT)} spent, burning "
            f"${standing.burn_per_hour.quantize(CENT)}/h",
        )
    return None


__all__ = ["HORIZON", "Due", "upcoming"]
