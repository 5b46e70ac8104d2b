"""Readable lines for people: what a cycle warned, did and left alone, and why.

Each line is `LABEL workspace (name, owner) · policy: the rule and the fact it rests
on — when`. `warden plan` and `warden demo` print them; both read the same decisions,
so that a plan line and a demo line of the same decision say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from warden.actuator import CycleOutcome
from warden.budget.enforce import CENT
from warden.model import Decision, DecisionKind, State, Workspace, WorkspaceId
from warden.policy.durations import format_duration
from warden.policy.models import Policy
from warden.policy.selector import covers

if TYPE_CHECKING:  # the cycle module imports this one's neighbours; only the type is needed
    from warden.budget.evaluate import Standing
    from warden.budget.keeper import Review
    from warden.cycle import CycleResult

LABEL_WIDTH = 11  # "KILL SWITCH"; "RELEASE KILL SWITCH" runs over, rarely seen
USD_SHOWN = Decimal("0.0001")  # the demo's cents need four places


def line(label: str, subject: str, text: str) -> str:
    """One line of the report: the label aligned, the subject, what and why."""
    return f"{label:<{LABEL_WIDTH}} {subject} · {text}"


def decision_line(decision: Decision, names: Mapping[WorkspaceId, Workspace]) -> str:
    """One decision as a line: verb, workspace, policy, the rule and its fact, and when."""
    tail = ""
    if decision.due_at is not None:
        tail = f" — {decision.verb} at {decision.due_at:%H:%M:%S} UTC unless snoozed"
    dry = " [dry run]" if decision.dry_run else ""
    text = f"{decision.policy}: {grounds(decision)}{tail}{dry}"
    return line(label_of(decision), who(decision.workspace, names), text)


def label_of(decision: Decision) -> str:
    """The verb as a word of the line: STOP, KILL SWITCH, RELEASE KILL SWITCH, WARN."""
    if decision.kind is DecisionKind.ACT and decision.verb is not None:
        return str(decision.verb).replace("_", " ").upper()
    return str(decision.kind).upper()


def grounds(decision: Decision) -> str:
    """The rule and the fact a decision rests on, in a few words.

    The reason names the rule's trigger and value; the facts add what the reason leaves
    out: how an extension moves the limit, how many are left.
    """
    facts = decision.facts
    if decision.extend_to is not None:
        trigger = next((k for k in ("running_for", "idle_for") if k in facts), None)
        reached = f"{trigger} {facts[trigger]} ≥ {facts['limit']}" if trigger else decision.reason
        return f"{reached}: deadline pushed to {decision.extend_to:%H:%M:%S} UTC{_extensions(facts, 1)}"
    text = decision.reason
    if "schedule" in facts and decision.kind is not DecisionKind.SKIP:
        text += f" (schedule {facts['schedule']})"
    return text + _extensions(facts, 0)


def _extensions(facts: Mapping[str, object], adding: int) -> str:
    """How the policy's extensions stand: why a stop can follow soon after an extension."""
    used, most = facts.get("extensions_used"), facts.get("extensions_max")
    if not isinstance(used, int) or not isinstance(most, int) or not most:
        return ""
    used += adding
    left = "none left: next time the limit is reached it stops" if used >= most else "more left"
    return (
        f" (extension {used} of {most}, {left})"
        if adding
        else f" ({used} of {most} extensions used)"
    )


def who(ref: WorkspaceId, names: Mapping[WorkspaceId, Workspace]) -> str:
    """The workspace's reference, with its name and owner where known."""
    ws = names.get(ref)
    return f"{ref}" + (f" ({_name_and_owner(ws)})" if ws else "")


def outcome_lines(outcome: CycleOutcome, names: Mapping[WorkspaceId, Workspace]) -> Iterable[str]:
    """What a cycle did (or would do), failed to do, waits for and held back, and why."""
    for decision in [*outcome.warned, *outcome.cleared, *outcome.done, *outcome.planned]:
        yield decision_line(decision, names)
    for label, pairs in (
        ("FAILED", outcome.failed),
        ("WAIT", outcome.deferred),
        ("HELD", outcome.held),
    ):
        for decision, why in pairs:
            subject = who(decision.workspace, names)
            yield line(label, subject, f"{decision.policy}: {decision.verb}: {why}")


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
    for text in outcome_lines(outcome, names):
        yield "  " + text
    for decision in result.decisions:
        if decision.kind is DecisionKind.SKIP:
            yield "  " + decision_line(decision, names)
    for standing in result.review.standings if result.review else []:
        yield "  " + line(
            "BUDGET",
            f"{standing.budget.name} ({standing.scope})",
            f"${standing.spent.quantize(CENT)} of ${standing.limit.quantize(CENT)}",
        )
    for skipped in observation.skipped:
        yield "  " + line("SKIPPED", f"{result.provider}/{skipped.native_id}", skipped.reason)


def budget_lines(review: Review | None, *, now: datetime) -> list[str]:
    """A line for each budget threshold that fired in a cycle, with the spend behind it."""
    return [
        threshold_line(standing, index, now=now)
        for standing in (review.standings if review else [])
        for index in standing.fired
    ]


def threshold_line(standing: Standing, index: int, *, now: datetime) -> str:
    """One fired threshold: spent (or, for a forecast, where the burn rate leads) against
    the share of the limit, and what it does."""
    threshold = standing.budget.thresholds[index]
    budget = standing.budget.budget
    share = f"{threshold.at}% of ${standing.limit}"
    spent = f"${standing.spent.quantize(USD_SHOWN)} spent"
    if threshold.forecast:
        fact = (
            f"forecast: {spent}, at ${standing.burn_per_hour.quantize(USD_SHOWN)}/h it comes "
            f"to ${standing.projected(now).quantize(USD_SHOWN)} by the window's end "
            f"({standing.window.end:%Y-%m-%d %H:%M} UTC), ≥ {share}"
        )
    else:
        fact = f"{spent} this {budget.window} ({budget.timezone}) ≥ {share}"
    return line("BUDGET", f"{standing.budget.name} ({standing.scope})", f"{fact} -> {threshold.do}")


def left_alone_lines(
    workspaces: Iterable[Workspace],
    decisions: Iterable[Decision],
    *,
    now: datetime,
    policies: Sequence[Policy] = (),
) -> Iterable[str]:
    """Workspaces no policy acted on this cycle: their state, and the policies that
    cover them but are not due (or that none does)."""
    touched = {d.workspace for d in decisions if d.kind is not DecisionKind.SKIP}
    for ws in workspaces:
        if ws.id not in touched:
            subject = f"{ws.id} ({_name_and_owner(ws)})"
            why = _why_alone(ws, now)
            if ws.state is State.RUNNING and policies:
                covering = [p.name for p in policies if covers(p, ws)]
                why += (
                    f": {', '.join(covering)} not due"
                    if covering
                    else ": no policy covers it (not matched, or excluded)"
                )
            yield line("OK", subject, f"left alone: {why}")


def _name_and_owner(ws: Workspace) -> str:
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
