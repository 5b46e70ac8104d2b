"""Which sinks get which event, and how a storm becomes one message per group.

Routing: an event whose `data.policy` names a known policy goes to that policy's
`notify` sinks (a budget's threshold event, with `data.threshold`, to that
threshold's; a budget's actions to every sink its thresholds name); an event without one (provider, policy-file and delivery events)
goes to every sink. Either way a sink's `min_severity` filters, and a `log` sink,
the local audit trail, receives everything its `min_severity` admits. An event that
ends an incident (`warden.provider.recovered` ends `warden.provider.unreachable`) is
routed with the severity of the event it ends, so whoever was told of the trouble is
told of its end. Events about a sink's own delivery never go to that sink: a sink
that cannot receive would otherwise be sent news of its failures forever.

An owner digest (`warden.owner.digest`) goes to the sinks its `data.notify` names, the
digest's, and to log sinks; never grouped: each owner's is a message of its own.

Grouping: Slack and PagerDuty sinks fold the events of one dispatch round that share
(type, policy) into one message; webhook and log sinks get one event each. Events
that open or close a PagerDuty incident are never folded, so that each resolve meets
its trigger's dedup_key.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from warden.events import catalogue as ev
from warden.model import Event
from warden.policy.models import BudgetPolicy, Policy, SinkConfig

SEVERITY_RANK: Final[Mapping[str, int]] = {"info": 0, "warning": 1, "critical": 2}

# An event of the key type ends the incident an event of the value type opened.
RESOLVES: Final[Mapping[str, str]] = {
    ev.PROVIDER_RECOVERED: ev.PROVIDER_UNREACHABLE,
    ev.POLICY_LOADED: ev.POLICY_REJECTED,
}
INCIDENT_TYPES: Final = frozenset(RESOLVES) | frozenset(RESOLVES.values())

GROUPING_SINKS: Final = frozenset({"slack", "pagerduty"})
# Delivery events name the sink they are about in `data.sink`.
ABOUT_A_SINK: Final = frozenset({ev.SINK_DISABLED, ev.EVENT_DEAD_LETTERED})


def routing_severity(event: Event) -> str:
    """The severity routing filters on: an incident's end counts as much as its start."""
    ended = RESOLVES.get(event.type)
    if ended is None:
        return event.severity
    return max(event.severity, ev.SEVERITY[ended], key=lambda s: SEVERITY_RANK.get(s, 0))


def admits(sink: SinkConfig, event: Event) -> bool:
    """True when `sink`'s min_severity lets `event` through."""
    rank = SEVERITY_RANK.get(routing_severity(event), 0)
    return rank >= SEVERITY_RANK[sink.min_severity]


def policy_of(event: Event) -> str | None:
    policy = event.data.get("policy")
    return policy if isinstance(policy, str) and policy else None


def route_key(event: Event) -> str | None:
    """The policy (or budget threshold, "name#index") whose sinks `event` goes to."""
    policy = policy_of(event)
    threshold = event.data.get("threshold")
    if policy is not None and isinstance(threshold, int) and not isinstance(threshold, bool):
        return f"{policy}#{threshold}"
    return policy


@dataclass(frozen=True, slots=True)
class Routes:
    """The sinks of the policy files and the sinks each policy notifies."""

    sinks: Mapping[str, SinkConfig]
    notify: Mapping[str, frozenset[str]]  # policy name → sink names

    @classmethod
    def of(
        cls, sinks: Mapping[str, SinkConfig], policies: Iterable[Policy | BudgetPolicy]
    ) -> Routes:
        notify: dict[str, frozenset[str]] = {}
        for p in policies:
            notify[p.name] = frozenset(p.notify)
            if isinstance(p, BudgetPolicy):
                for i, threshold in enumerate(p.thresholds):
                    notify[f"{p.name}#{i}"] = frozenset(threshold.notify)
        return cls(dict(sinks), notify)

    def wants(self, sink_name: str, event: Event) -> bool:
        """True when `event` must be delivered to the sink called `sink_name`."""
        sink = self.sinks.get(sink_name)
        if sink is None or not admits(sink, event):
            return False
        if event.type in ABOUT_A_SINK and event.data.get("sink") == sink_name:
            return False
        if sink.type == "log":
            return True
        if event.type == ev.OWNER_DIGEST:  # a digest names its own sinks, and only those
            notify = event.data.get("notify")
            return isinstance(notify, list) and sink_name in notify
        policy = route_key(event)
        if policy is None or policy not in self.notify:
            # No policy, or one removed since: tell everyone rather than no one.
            return True
        return sink_name in self.notify[policy]

    def sink_type(self, sink_name: str) -> str | None:
        sink = self.sinks.get(sink_name)
        return None if sink is None else sink.type

    def sinks_for(self, event: Event) -> list[str]:
        """Every sink that gets `event`, by name."""
        return sorted(name for name in self.sinks if self.wants(name, event))


def group_key(sink_type: str, event: Event) -> tuple[str, str | None] | None:
    """What `event` is folded with in a message to a sink of `sink_type`; None: alone."""
    if sink_type not in GROUPING_SINKS or event.type == ev.OWNER_DIGEST:
        return None  # each owner's digest is a message of its own
    if sink_type == "pagerduty" and event.type in INCIDENT_TYPES:
        return None
    return (event.type, policy_of(event))


class Queued(Protocol):
    """A delivery waiting for its sink: the event, and its batch once one is recorded."""

    @property
    def event(self) -> Event: ...

    @property
    def batch(self) -> str | None: ...


Q = TypeVar("Q", bound=Queued)


@dataclass(frozen=True, slots=True)
class Batch(Generic[Q]):
    """Deliveries sent as one request. `id` is stable across retries.

    `id` is the recorded batch, or the first member's event id; `is_new` says it has
    to be recorded before the first attempt (grouping sinks only).
    """

    id: str
    items: tuple[Q, ...]
    is_new: bool

    @property
    def events(self) -> list[Event]:
        return [item.event for item in self.items]


def plan_batches(sink_type: str, queued: Sequence[Q], *, limit: int) -> list[Batch[Q]]:
    """`queued` (in delivery order) cut into requests, first-queued first.

    A batch recorded by an earlier attempt is sent again as it was; new deliveries
    are grouped by `group_key`, at most `limit` to a message.
    """
    recorded: dict[str, list[Q]] = {}
    fresh: dict[object, list[Q]] = {}
    order: list[tuple[bool, object]] = []
    for item in queued:
        if item.batch is not None:
            _append(recorded, item.batch, item, order, (True, item.batch))
        else:
            key = group_key(sink_type, item.event)
            slot: object = key if key is not None else ("alone", item.event.id)
            _append(fresh, slot, item, order, (False, slot))
    grouping = sink_type in GROUPING_SINKS
    batches: list[Batch[Q]] = []
    for is_recorded, slot in order:
        if is_recorded:
            assert isinstance(slot, str)
            batches.append(Batch(slot, tuple(recorded[slot]), is_new=False))
            continue
        members = fresh[slot]
        for start in range(0, len(members), limit):
            chunk = tuple(members[start : start + limit])
            batches.append(Batch(chunk[0].event.id, chunk, is_new=grouping))
    return batches


K = TypeVar("K")


def _append(
    groups: dict[K, list[Q]],
    key: K,
    item: Q,
    order: list[tuple[bool, object]],
    marker: tuple[bool, object],
) -> None:
    if key not in groups:
        groups[key] = []
        order.append(marker)
    groups[key].append(item)
