"""The catalogue of event types, and the one way to build an Event.

Names are `warden.<noun>.<past-tense verb>`; the README lists each with an example.
`data` is JSON-ready: strings, numbers, booleans, lists and objects, never a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from warden.logging import REDACTOR
from warden.model import Decision, DecisionKind, Event, Verb

WORKSPACE_WARNED: Final = "warden.workspace.warned"
WORKSPACE_WARNING_CLEARED: Final = "warden.workspace.warning_cleared"
WORKSPACE_STOPPED: Final = "warden.workspace.stopped"
WORKSPACE_RESUMED: Final = "warden.workspace.resumed"
WORKSPACE_EXTENDED: Final = "warden.workspace.extended"
# a lifecycle policy wrote the platform's settings (Mage's lifecycle config)
WORKSPACE_CONFIGURED: Final = "warden.workspace.configured"
# the agent-run platform's kill switch: every run and step there is blocked, or free again
KILL_SWITCH_ENGAGED: Final = "warden.workspace.kill_switch_engaged"
KILL_SWITCH_RELEASED: Final = "warden.workspace.kill_switch_released"
WORKSPACE_NOTIFIED: Final = "warden.workspace.notified"
WORKSPACE_SKIPPED: Final = "warden.workspace.skipped"
WORKSPACE_SNOOZED: Final = "warden.workspace.snoozed"
# an owner (a signed link) or an admin marked the workspace in use until a time
WORKSPACE_KEPT_ALIVE: Final = "warden.workspace.kept_alive"
ACTION_PLANNED: Final = "warden.action.planned"  # dry run: what would have happened
ACTION_FAILED: Final = "warden.action.failed"
ACTION_HELD: Final = "warden.action.held"  # a safety rail held an action back
ACTION_RELEASED: Final = "warden.action.released"  # an admin let a held policy act
ACTION_RECOVERED: Final = "warden.action.recovered"  # an action a crash interrupted, settled
REPLICA_FENCED: Final = "warden.replica.fenced"  # this replica lost its lease: it stops acting
PROVIDER_UNREACHABLE: Final = "warden.provider.unreachable"
PROVIDER_RECOVERED: Final = "warden.provider.recovered"
PROVIDER_ANSWER_REJECTED: Final = "warden.provider.answer_rejected"
POLICY_REJECTED: Final = "warden.policy.rejected"
POLICY_LOADED: Final = "warden.policy.loaded"
# a permission or plan the policy needs is missing
POLICY_DEGRADED: Final = "warden.policy.degraded"
SPEND_INCOMPLETE: Final = "warden.spend.incomplete"  # a running workspace has no price
# a spend feed could not be read or answered nonsense; none of that answer was kept
SPEND_FEED_FAILED: Final = "warden.spend.feed_failed"
# a spend feed's data is older than its max_lag: budgets rest on old figures (once an episode)
SPEND_FEED_LAGGING: Final = "warden.spend.feed_lagging"
# one owner's periodic digest: what ran, cost, was stopped and avoided, and what is due
OWNER_DIGEST: Final = "warden.owner.digest"
WORKSPACE_THROTTLED: Final = "warden.workspace.throttled"
WORKSPACE_RESTORED: Final = "warden.workspace.restored"
BUDGET_THRESHOLD_CROSSED: Final = "warden.budget.threshold_crossed"
BUDGET_WINDOW_RESET: Final = "warden.budget.window_reset"  # what a budget did is undone
SINK_DISABLED: Final = "warden.sink.disabled"  # a receiver answered 410 Gone
EVENT_DEAD_LETTERED: Final = "warden.event.dead_lettered"  # a sink gave up on an event

SEVERITY: Mapping[str, str] = {
    WORKSPACE_WARNED: "warning",
    WORKSPACE_WARNING_CLEARED: "info",
    WORKSPACE_STOPPED: "warning",
    WORKSPACE_RESUMED: "info",
    WORKSPACE_EXTENDED: "info",
    WORKSPACE_CONFIGURED: "info",
    KILL_SWITCH_ENGAGED: "critical",
    KILL_SWITCH_RELEASED: "info",
    WORKSPACE_NOTIFIED: "warning",
    WORKSPACE_SKIPPED: "info",
    WORKSPACE_SNOOZED: "info",
    WORKSPACE_KEPT_ALIVE: "info",
    ACTION_PLANNED: "info",
    ACTION_FAILED: "critical",
    ACTION_HELD: "critical",
    ACTION_RELEASED: "warning",
    ACTION_RECOVERED: "warning",
    REPLICA_FENCED: "warning",
    PROVIDER_UNREACHABLE: "critical",
    PROVIDER_RECOVERED: "info",
    PROVIDER_ANSWER_REJECTED: "warning",
    POLICY_REJECTED: "critical",
    POLICY_LOADED: "info",
    POLICY_DEGRADED: "critical",
    SPEND_INCOMPLETE: "warning",
    SPEND_FEED_FAILED: "warning",
    SPEND_FEED_LAGGING: "warning",
    OWNER_DIGEST: "info",
    WORKSPACE_THROTTLED: "warning",
    WORKSPACE_RESTORED: "info",
    BUDGET_THRESHOLD_CROSSED: "warning",  # critical when the threshold acts or is 100%+
    BUDGET_WINDOW_RESET: "info",
    SINK_DISABLED: "critical",
    EVENT_DEAD_LETTERED: "warning",
}

DONE_BY_VERB: Mapping[Verb, str] = {
    Verb.STOP: WORKSPACE_STOPPED,
    Verb.RESUME: WORKSPACE_RESUMED,
    Verb.EXTEND: WORKSPACE_EXTENDED,
    Verb.CONFIGURE: WORKSPACE_CONFIGURED,
    Verb.NOTIFY: WORKSPACE_NOTIFIED,
    Verb.THROTTLE: WORKSPACE_THROTTLED,
    Verb.RESTORE: WORKSPACE_RESTORED,
    Verb.KILL_SWITCH: KILL_SWITCH_ENGAGED,
    Verb.RELEASE: KILL_SWITCH_RELEASED,
}


def new_event(
    type_: str,
    subject: str,
    *,
    now: datetime,
    data: Mapping[str, Any],
    severity: str | None = None,
) -> Event:
    """An event of a catalogued type with a fresh id (and its type's severity, unless given)."""
    if type_ not in SEVERITY:
        raise ValueError(f"event type {type_!r} is not in the catalogue")
    return Event(
        id=str(uuid.uuid4()),
        type=type_,
        subject=subject,
        time=now,
        data=REDACTOR.mask(dict(data)),  # the last line of defence: no secret leaves in an event
        severity=severity or SEVERITY[type_],
    )


def decision_data(decision: Decision) -> dict[str, Any]:
    """The part of an event's data that says what was decided and why."""
    data: dict[str, Any] = {
        "workspace": str(decision.workspace),
        "provider": decision.workspace.provider,
        "policy": decision.policy,
        "decision": str(decision.kind),
        "reason": decision.reason,
        "dry_run": decision.dry_run,
        "facts": dict(decision.facts),
    }
    if decision.verb is not None:
        data["action"] = str(decision.verb)
    if decision.due_at is not None:
        data["due_at"] = decision.due_at.isoformat()
    if decision.extend_to is not None:
        data["extend_to"] = decision.extend_to.isoformat()
    return data


def decision_event(decision: Decision, *, now: datetime, extra: Mapping[str, Any] = {}) -> Event:
    """The event that reports a WARN, CLEAR or SKIP decision."""
    type_ = {
        DecisionKind.WARN: WORKSPACE_WARNED,
        DecisionKind.CLEAR: WORKSPACE_WARNING_CLEARED,
        DecisionKind.SKIP: WORKSPACE_SKIPPED,
    }[decision.kind]
    return new_event(
        type_, str(decision.workspace), now=now, data=decision_data(decision) | dict(extra)
    )
