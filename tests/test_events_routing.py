"""Routing and grouping, as tables: which sink gets which event, and what is folded."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import TypeAdapter

from tests.conftest import START
from tests.events_rig import recovered, stopped, unreachable, warned
from warden.events import catalogue as ev
from warden.events.routing import Routes, group_key, plan_batches, routing_severity
from warden.model import Event
from warden.policy.models import Policy, SinkConfig

SINK = TypeAdapter(SinkConfig)
SINKS = {
    "team": SINK.validate_python({"type": "slack", "url": "https://hooks.slack.test/x"}),
    "oncall": SINK.validate_python(
        {"type": "pagerduty", "routing_key": "k", "min_severity": "critical"}
    ),
    "audit": SINK.validate_python({"type": "webhook", "url": "https://audit.test/"}),
    "journal": SINK.validate_python({"type": "log", "min_severity": "warning"}),
}
POLICIES = [
    Policy.model_validate({"name": "idle-dev", "when": {"idle_for": "2h"}, "notify": ["team"]}),
    Policy.model_validate({"name": "quiet", "when": {"idle_for": "2h"}}),
]
ROUTES = Routes.of(SINKS, POLICIES)


def _event(type_: str, **data: object) -> Event:
    return ev.new_event(type_, "s", now=START, data=data)


@pytest.mark.parametrize(
    ("event", "sinks"),
    [
        (stopped("ws-1", START), ["journal", "team"]),  # notify: team; the log admits all
        (stopped("ws-1", START, policy="quiet"), ["journal"]),  # notify: nobody
        (stopped("ws-1", START, policy="gone-since"), ["audit", "journal", "team"]),
        (unreachable("coder-prod", START), ["audit", "journal", "oncall", "team"]),
        (recovered("coder-prod", START), ["audit", "journal", "oncall", "team"]),  # ends one
        (_event(ev.ACTION_PLANNED, policy="gone-since"), ["audit", "team"]),  # info
        (_event(ev.POLICY_LOADED), ["audit", "journal", "oncall", "team"]),  # ends rejected
        (_event(ev.SINK_DISABLED, sink="audit"), ["journal", "oncall", "team"]),  # not itself
        (_event(ev.EVENT_DEAD_LETTERED, sink="team"), ["audit", "journal"]),
    ],
    ids=[
        "policy-notify",
        "policy-without-sinks",
        "unknown-policy",
        "no-policy",
        "incident-end",
        "min-severity",
        "policy-files-fixed",
        "sink-disabled",
        "dead-letter",
    ],
)
def test_which_sinks_get_an_event(event: Event, sinks: list[str]) -> None:
    assert ROUTES.sinks_for(event) == sinks


def test_an_incidents_end_has_the_severity_of_its_start() -> None:
    assert routing_severity(recovered("p", START)) == "critical"
    assert routing_severity(_event(ev.POLICY_LOADED)) == "critical"
    assert routing_severity(stopped("ws-1", START)) == "warning"


@pytest.mark.parametrize(
    ("sink_type", "event", "key"),
    [
        ("webhook", stopped("ws-1", START), None),
        ("log", stopped("ws-1", START), None),
        ("slack", stopped("ws-1", START), (ev.WORKSPACE_STOPPED, "idle-dev")),
        ("pagerduty", stopped("ws-1", START), (ev.WORKSPACE_STOPPED, "idle-dev")),
        ("slack", unreachable("p", START), (ev.PROVIDER_UNREACHABLE, None)),
        ("pagerduty", unreachable("p", START), None),  # its resolve must meet it alone
        ("pagerduty", recovered("p", START), None),
    ],
)
def test_what_a_sink_folds_together(sink_type: str, event: Event, key: object) -> None:
    assert group_key(sink_type, event) == key


@dataclass(frozen=True)
class Item:
    event: Event
    batch: str | None = None


def test_batches_keep_recorded_groups_and_fold_new_ones_in_order() -> None:
    a, b, c = (stopped(f"ws-{i}", START) for i in range(3))
    w = warned("ws-9", START)
    other = stopped("ws-8", START, policy="quiet")
    queued = [Item(a, "old"), Item(w), Item(b), Item(other), Item(c, "old")]
    batches = plan_batches("slack", queued, limit=10)
    assert [(x.id, [i.event.id for i in x.items], x.is_new) for x in batches] == [
        ("old", [a.id, c.id], False),
        (w.id, [w.id], True),
        (b.id, [b.id], True),
        (other.id, [other.id], True),
    ]
    assert [len(x.items) for x in plan_batches("webhook", queued, limit=10)] == [2, 1, 1, 1]
    assert all(not x.is_new for x in plan_batches("webhook", [Item(b)], limit=10))


def test_a_group_larger_than_the_limit_is_cut() -> None:
    queued = [Item(stopped(f"ws-{i}", START)) for i in range(5)]
    assert [len(b.items) for b in plan_batches("pagerduty", queued, limit=2)] == [2, 2, 1]
