"""What budgets do to one provider's workspaces in one cycle: act, or undo. Pure.

A threshold that acts stays in force for the rest of its window: the scope's running
workspaces are stopped (largest spenders first), the agent-run platform's kill
switch is turned on (its `stop`) or its limits lowered. At the window's reset,
exactly what the budget did is undone: a workspace it stopped and that is still
stopped by it is resumed, a throttle is restored; anything a person changed since is
left as they set it. A resume waits while an office-hours schedule covering the
workspace is closed, so a reset at midnight never starts a GPU box for the night.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from warden.actuator import counts_toward_blast_radius
from warden.budget.evaluate import Standing, acting_thresholds, scope_of
from warden.budget.state import Acted, WindowKey, WindowState
from warden.model import (
    EMPTY_MEMORY,
    Decision,
    DecisionKind,
    Memory,
    State,
    Verb,
    Workspace,
    WorkspaceId,
)
from warden.policy.decide import Rules
from warden.policy.models import Threshold
from warden.policy.schedule import is_open
from warden.policy.selector import covers, matches

CENT = Decimal("0.01")


@dataclass(slots=True)
class Undo:
    """The undo of ended windows for one provider: decisions, and what needs none."""

    decisions: list[Decision] = field(default_factory=list)
    # (window key, acted) that has nothing left to undo (resumed by someone, gone)
    settled: list[tuple[WindowKey, Acted]] = field(default_factory=list)


@dataclass(slots=True)
class Enforcement:
    """The budgets' actions on one provider, and the workspaces a spent budget holds down."""

    decisions: list[Decision] = field(default_factory=list)
    held: dict[WorkspaceId, str] = field(default_factory=dict)  # → the budget holding it


def enforcement(standings: Sequence[Standing], snapshots: Sequence[Workspace]) -> Enforcement:
    """Actions the fired thresholds of the current windows call for on these workspaces."""
    result = Enforcement()
    for standing in standings:
        fired = (*(standing.state.fired if standing.state else ()), *standing.fired)
        for threshold in acting_thresholds(standing.budget, fired):
            targets = _targets(standing, threshold, snapshots)
            if threshold.do != "throttle":
                result.held.update((ws.id, standing.budget.name) for ws in targets)
            result.decisions.extend(_acts(standing, threshold, targets))
    result.decisions = _once_per_workspace(result.decisions)
    return result


def combine(
    decisions: Sequence[Decision], enforced: Enforcement, undo: Sequence[Decision]
) -> list[Decision]:
    """The policies' decisions with the budgets': one state change per workspace.

    A spent budget wins over a policy's resume (a schedule's opening does not start
    what the budget holds down); a policy's own stop or resume of a workspace goes
    first and the budget's is dropped. The budgets' stops come largest spender first
    (across every scope), so that where the rails' pace lets only some act this cycle,
    the biggest costs stop first and the rest wait for the next cycle.
    """
    kept = [
        d
        for d in decisions
        if not (
            d.kind is DecisionKind.ACT and d.verb is Verb.RESUME and d.workspace in enforced.held
        )
    ]
    changing = {d.workspace for d in kept if counts_toward_blast_radius(d)}
    budget = [d for d in (*enforced.decisions, *undo) if d.workspace not in changing]
    disruptive = sorted((d for d in budget if counts_toward_blast_radius(d)), key=_largest_first)
    rest = [d for d in budget if not counts_toward_blast_radius(d)]
    return kept + disruptive + rest


def _largest_first(d: Decision) -> tuple[Decimal, WorkspaceId]:
    """Across every scope and budget: the workspace that spent most goes first."""
    return (-Decimal(str(d.facts.get("workspace_spent", 0))), d.workspace)


def _acts(
    standing: Standing, threshold: Threshold, targets: Sequence[Workspace]
) -> Iterator[Decision]:
    acted = {(a.workspace, a.verb) for a in standing.state.acted} if standing.state else set()
    verb = Verb.THROTTLE if threshold.do == "throttle" else Verb.STOP
    for ws in targets:
        if ws.transitioning or ws.busy:
            continue  # never mid-build; a busy workspace is never stopped by any policy
        if (verb is Verb.STOP and ws.state is State.RUNNING) or (
            verb is Verb.THROTTLE and (ws.id, verb) not in acted
        ):
            yield _decision(standing, threshold, ws, verb)


def _targets(
    standing: Standing, threshold: Threshold, snapshots: Sequence[Workspace]
) -> list[Workspace]:
    """The threshold's target, or the scope's own workspaces; largest spenders first."""
    budget = standing.budget
    if threshold.target is not None:
        chosen = [ws for ws in snapshots if matches(threshold.target, ws)]
    else:
        chosen = [
            ws
            for ws in snapshots
            if covers(budget, ws) and scope_of(budget.budget.per, ws) == standing.scope
        ]
    spent = dict(standing.spenders)
    return sorted(chosen, key=lambda ws: (-spent.get(ws.id, Decimal(0)), ws.id))


def _decision(standing: Standing, threshold: Threshold, ws: Workspace, verb: Verb) -> Decision:
    budget = standing.budget
    spent = dict(standing.spenders).get(ws.id, Decimal(0))
    facts: dict[str, Any] = budget_facts(standing) | {
        "threshold": f"{threshold.at}%",
        "workspace_spent": str(spent),
    }
    if verb is Verb.THROTTLE:
        assert threshold.throttle is not None
        facts["throttle"] = {
            k: str(v) for k, v in threshold.throttle.model_dump(exclude_none=True).items()
        }
        facts["episode"] = standing.window.start.isoformat()
    return Decision(
        kind=DecisionKind.ACT,
        workspace=ws.id,
        policy=budget.name,
        verb=verb,
        reason=(
            f"budget {budget.name}: {standing.scope} spent ${standing.spent.quantize(CENT)} of "
            f"${standing.limit.quantize(CENT)} this {budget.budget.window} "
            f"({budget.budget.timezone}), {threshold.at}% reached"
        ),
        dry_run=budget.dry_run,
        facts=facts,
    )


def percent_text(standing: Standing) -> str:
    """Spent as a share of the limit, as events and explanations print it: "82.5%"."""
    return f"{standing.percent.quantize(Decimal('0.1'))}%"


def budget_facts(standing: Standing) -> dict[str, Any]:
    """The budget's standing, as decisions and events carry it (money as exact strings)."""
    return {
        "budget": standing.budget.name,
        "per": standing.budget.budget.per,
        "scope": standing.scope,
        "window_start": standing.window.start.isoformat(),
        "window_end": standing.window.end.isoformat(),
        "timezone": standing.budget.budget.timezone,
        "spent": str(standing.spent),
        "limit": str(standing.limit),
        "currency": "USD",
    }


def _once_per_workspace(decisions: list[Decision]) -> list[Decision]:
    """One action per workspace and verb: two budgets over one workspace stop it once."""
    seen: set[tuple[WorkspaceId, Verb | None]] = set()
    kept = []
    for d in decisions:
        if (d.workspace, d.verb) not in seen:
            seen.add((d.workspace, d.verb))
            kept.append(d)
    return kept


def undo(
    ended: Sequence[WindowState],
    snapshots: Mapping[WorkspaceId, Workspace],
    memory: Mapping[WorkspaceId, Memory],
    rules: Rules,
    *,
    now: datetime,
) -> Undo:
    """Resume and restore what ended windows' budgets did, on this provider's workspaces."""
    result = Undo()
    for state in ended:
        for acted in state.acted:
            ws = snapshots.get(acted.workspace)
            if ws is None:
                continue  # not seen in this listing: judge it when it is
            decision = _undo_one(state, acted, ws, memory.get(ws.id, EMPTY_MEMORY), rules, now)
            if decision is None:
                result.settled.append((state.key, acted))
            elif decision.kind is DecisionKind.ACT:
                result.decisions.append(decision)
    return result


def _undo_one(
    state: WindowState, acted: Acted, ws: Workspace, mem: Memory, rules: Rules, now: datetime
) -> Decision | None:
    """The undo of one action; None when there is nothing (left) to undo.

    A resume deferred while a schedule is closed is a SKIP: not carried out, not settled.
    """
    facts: dict[str, Any] = {
        "budget": state.budget,
        "scope": state.scope,
        "window_start": state.window_start.isoformat(),
        "window_end": state.window_end.isoformat(),
        "episode": f"{state.window_start.isoformat()}#undo",
    }
    reason = f"budget {state.budget}: its window ended at {state.window_end.isoformat()}"
    kind, verb = DecisionKind.ACT, Verb.RESUME
    if acted.verb is Verb.THROTTLE:
        verb, facts["replaced"] = Verb.RESTORE, dict(acted.replaced or {})
    elif ws.state is not State.STOPPED or mem.stopped_by != state.budget:
        return None  # running again, or stopped since by someone or something else
    elif (closed := _closed_schedule(rules, ws, now)) is not None:
        kind, reason = DecisionKind.SKIP, f"{reason}; resumes when schedule {closed} opens"
    return Decision(
        kind=kind, workspace=ws.id, policy=state.budget, verb=verb, reason=reason, facts=facts
    )


def _closed_schedule(rules: Rules, ws: Workspace, now: datetime) -> str | None:
    for policy in rules.policies:
        if policy.schedule is None or not covers(policy, ws):
            continue
        schedule = rules.schedules.get(policy.schedule)
        if schedule is not None and not is_open(schedule, now):
            return policy.schedule
    return None
