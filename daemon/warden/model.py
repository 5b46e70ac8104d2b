"""Platform-neutral value types: what Warden saw, remembers and decided.

Everything here is immutable data. `None` always means "the platform did not say",
never zero or false: unknown facts must never be mistaken for idle ones.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class State(StrEnum):
    """A workspace's lifecycle state, mapped from each platform's own vocabulary."""

    RUNNING = "running"
    STOPPED = "stopped"
    STARTING = "starting"
    STOPPING = "stopping"
    FAILED = "failed"
    UNKNOWN = "unknown"


# One empty mapping that every snapshot without labels, utilisation or resources
# shares: at 100k workspaces a poll, three empty dicts each are 20 MB for nothing.
NOTHING: Mapping[str, Any] = MappingProxyType({})


def shared(value: Any) -> Any:
    """A text as the one string object every holder of it shares: one that many
    workspaces repeat (an owner, a template, a status, a policy name), or that a cycle
    holds in several places (a workspace's id: in its snapshot, its memory, its spend).
    At 100k workspaces a poll, a copy each is tens of MB. Interned strings are freed
    once nothing holds them. Anything but a string comes back as it is."""
    return sys.intern(value) if isinstance(value, str) else value


def shared_decimal(value: int | str | Decimal) -> Decimal:
    """`Decimal(value)` as the one object every holder of the same figure shares: a
    fleet has a few daily costs and spend rates, and a Decimal each is 10 MB at 100k
    workspaces. Keyed by the figure and its text too, so that equal figures written
    differently (1.5 and 1.500000, 1 and True) keep their own Decimal."""
    return _decimal_of(value, str(value))


@functools.lru_cache(maxsize=1024)
def _decimal_of(value: int | str | Decimal, _text: str) -> Decimal:
    return Decimal(value)


@dataclass(frozen=True, slots=True, order=True)
class WorkspaceId:
    """A workspace, qualified by the provider instance that owns it."""

    provider: str  # the instance name from the policy file: "coder-prod"
    native: str  # the platform's own id

    def __str__(self) -> str:
        return f"{self.provider}/{self.native}"

    @classmethod
    def parse(cls, text: str) -> WorkspaceId:
        provider, sep, native = text.partition("/")
        if not sep or not provider or not native:
            raise ValueError(f"expected PROVIDER/ID, got {text!r}")
        return cls(provider, native)


@dataclass(frozen=True, slots=True, kw_only=True)
class Workspace:
    """What one poll saw of one workspace, in platform-neutral terms."""

    id: WorkspaceId
    name: str
    owner: str
    state: State
    observed_at: datetime  # aware UTC: when Warden saw it
    kind: str = "workspace"  # provider type: coder, strongly, mage, ...
    template: str | None = None
    project: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: NOTHING)
    started_at: datetime | None = None  # when the current running period began
    last_active_at: datetime | None = None  # last user activity the platform reported
    busy: bool | None = None  # True when the platform reports real work running now
    deadline: datetime | None = None  # the platform's own autostop deadline
    max_deadline: datetime | None = None  # how far the deadline may be pushed
    cost_units_per_day: Decimal | None = None  # the platform's own cost figure (Coder credits)
    transitioning: bool = False  # a build/operation is in flight; never act on it
    utilisation: Mapping[str, Decimal | None] = field(
        default_factory=lambda: NOTHING
    )  # "cpu", "gpu", ... in %
    resources: Mapping[str, Any] = field(
        default_factory=lambda: NOTHING
    )  # cpu, memory_gib, gpu_type, gpus
    facts: Mapping[str, Any] = field(default_factory=lambda: NOTHING)  # extra, for explain

    @property
    def ref(self) -> str:
        return str(self.id)

    def idle_for(self, now: datetime) -> timedelta | None:
        """How long since the last activity; None when activity is unknown or work runs."""
        if self.busy or self.last_active_at is None:
            return None
        return max(now - self.last_active_at, timedelta(0))

    def running_for(self, now: datetime) -> timedelta | None:
        if self.state is not State.RUNNING or self.started_at is None:
            return None
        return max(now - self.started_at, timedelta(0))


class Verb(StrEnum):
    """What an action does to a workspace."""

    STOP = "stop"
    RESUME = "resume"
    EXTEND = "extend"
    NOTIFY = "notify"
    THROTTLE = "throttle"  # lower the agent-run platform's limits (a budget's action)
    RESTORE = "restore"  # put a throttle's limits back (a budget's reset)
    CONFIGURE = "configure"  # write the platform's own settings (Mage's lifecycle config)
    KILL_SWITCH = "kill_switch"  # the agent-run platform's switch on: every run is blocked
    RELEASE = "release_kill_switch"  # the kill switch off again: runs are accepted


class DecisionKind(StrEnum):
    """What decide() concluded for one workspace under one policy."""

    WARN = "warn"  # tell the owner; the action falls due at `due_at`
    ACT = "act"  # carry out `verb` now
    CLEAR = "clear"  # a pending warning no longer applies (activity came back)
    SKIP = "skip"  # would have acted but must not: the reason says why


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One conclusion with the facts that justify it."""

    kind: DecisionKind
    workspace: WorkspaceId
    policy: str
    verb: Verb | None = None
    reason: str = ""
    due_at: datetime | None = None  # WARN: when the action will happen
    extend_to: datetime | None = None  # ACT+EXTEND: the new deadline
    dry_run: bool = False
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Warning:
    """A warning given and not yet resolved."""

    policy: str
    verb: Verb
    warned_at: datetime
    due_at: datetime
    snoozes_used: int = 0
    event_id: str | None = None  # the event that told it: its action waits for its delivery


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """What the store remembers about one workspace between polls."""

    first_seen_at: datetime | None = None
    running_since: datetime | None = None  # first poll that saw it running, this period
    warnings: Mapping[str, Warning] = field(default_factory=lambda: NOTHING)  # by policy name
    snoozed_until: datetime | None = None
    extensions_used: Mapping[str, int] = field(default_factory=lambda: NOTHING)  # by policy
    stopped_by: str | None = None  # the policy that made Warden stop it, if Warden did
    stopped_at: datetime | None = None
    last_action_key: str | None = None
    # A keep-alive: in use until `kept_alive_until`, asked for at `kept_alive_at`. Idle
    # and utilisation policies hold their stop until then, each at most its own
    # `keep_alive.max` after `kept_alive_at` (`KeepAlive.held_until`).
    kept_alive_at: datetime | None = None
    kept_alive_until: datetime | None = None
    # Utilisation samples kept across polls, oldest first, by metric ("gpu", "cpu");
    # a None value is a poll where the platform did not say.
    samples: Mapping[str, Sequence[tuple[datetime, Decimal | None]]] = field(
        default_factory=lambda: NOTHING
    )


EMPTY_MEMORY = Memory()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something Warden decided, did or noticed, as it will be told to the sinks.

    `type` is from the catalogue in `warden.events.catalogue` (for example
    "warden.workspace.stopped"); `subject` is the workspace reference or another scope.
    `data` is JSON-ready and never holds a secret. `id` is unique and stable: sinks
    de-duplicate on it.
    """

    id: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    severity: str = "info"  # info, warning, critical: sinks filter on it
