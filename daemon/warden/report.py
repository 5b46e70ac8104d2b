"""Readable lines for people: what a cycle warned, did and left alone, and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from warden.actuator import CycleOutcome
from warden.budget.enforce import CENT
from warden.model import Decision, DecisionKind, State, Workspace, WorkspaceId
from warden.policy.durations import format_duration

if TYPE_CHECKING:  # the cycle module imports this one's neighbours; only the type is needed
    from warden.cycle import CycleResult


def decision_line(decision: Decision, names: Mapping[WorkspaceId, Workspace]) -> str:
    """One decision as a line: verb, workspace, policy, reason, and when."""
    ws = names.get(decision.workspace)
    who = f"{decision.workspace}" + (f" ({_who(ws)})" if ws else "")
    head = _label(decision)
    tail = ""
    if decision.due_at is not None:
        tail = f" — {decision.verb} at {decision.due_at:%H:%M:%S} UTC unless snoozed"
    if decision.extend_to is not None:
        tail = f" — deadline now {decision.extend_to:%H:%M:%S} UTC"
    dry = " [dry run]" if decision.dry_run else ""
    return f"{head:<9} {who} · {decision.policy}: {decision.reason}{tail}{dry}"


def _label(decision: Decision) -> str:
    """The verb as a word of the line: STOP, KILL SWITCH, RELEASE KILL SWITCH, WARN."""
    if decision.kind is DecisionKind.ACT and decision.verb is not None:
        return str(decision.verb).replace("_", " ").upper()
    return str(decision.kind).upper()


def outcome_lines(outcome: CycleOutcome, names: Mapping[WorkspaceId, Workspace]) -> Iterable[str]:
    """What a cycle did, failed to do or held back."""
    for decision in outcome.warned:
        yield decision_line(decision, names)
    for decision in outcome.cleared:
        yield decision_line(decision, names)
    for decision in [*outcome.done, *outcome.planned]:
        yield decision_line(decision, names)
    for decision, why in outcome.failed:
        yield f"FAILED    {decision.workspace} · {decision.policy}: {decision.verb}: {why}"
    for decision, why in outcome.held:
        yield f"HELD      {decision.workspace} · {decision.policy}: {decision.verb}: {why}"


def plan_lines(result: CycleResult) -> Iterable[str]:
    """`warden plan`: one provider's decisions, what would be done, wait or be held."""
    observation = result.observation
    assert observation is not None
    names = {ws.id: ws for ws in observation.workspaces}
    outcome = result.outcome
    yield (
        f"{result.provider}: {len(observation.workspaces)} workspaces, "
        f"{len(result.decisions)} decisions"
        + ("" if observation.complete else " (the listing is incomplete)")
    )
    for decision in [*outcome.warned, *outcome.cleared, *outcome.planned]:
        yield "  " + decision_line(decision, names)
    for decision, why in outcome.deferred:
        yield f"  {'WAIT':<9} {decision.workspace} · {decision.policy}: {decision.verb}: {why}"
    for decision, why in outcome.held:
        yield f"  {'HELD':<9} {decision.workspace} · {decision.policy}: {decision.verb}: {why}"
    for decision in result.decisions:
        if decision.kind is DecisionKind.SKIP:
            yield "  " + decision_line(decision, names)
    for standing in result.review.standings if result.review else []:
        yield (
            f"  {'BUDGET':<9} {standing.budget.name} ({standing.scope}): "
            f"${standing.spent.quantize(CENT)} of ${standing.limit.quantize(CENT)}"
        )
    for skipped in observation.skipped:
        yield f"  {'SKIPPED':<9} {result.provider}/{skipped.native_id}: {skipped.reason}"


def left_alone_lines(
    workspaces: Iterable[Workspace], decisions: Iterable[Decision], *, now: datetime
) -> Iterable[str]:
    """Workspaces no policy acted on this cycle, with their state."""
    touched = {d.workspace for d in decisions if d.kind is not DecisionKind.SKIP}
    for ws in workspaces:
        if ws.id not in touched:
            yield f"{'OK':<9} {ws.id} ({_who(ws)}) · left alone: {_why_alone(ws, now)}"


def _who(ws: Workspace) -> str:
    return f"{ws.name}, {ws.owner}" if ws.owner else ws.name


def _why_alone(ws: Workspace, now: datetime) -> str:
    """The fact that kept a workspace out of every policy's reach, in a few words."""
    if ws.state is not State.RUNNING:
        return str(ws.state)
    if ws.busy:
        return "running, busy (work in progress)"
    facts = []
    if ws.last_active_at is not None:
        facts.append(f"active {format_duration(now - ws.last_active_at)} ago")
    gpu = ws.utilisation.get("gpu")
    if gpu is not None:
        facts.append(f"GPU {gpu}%")
    return "running, " + (", ".join(facts) if facts else "activity unknown")
