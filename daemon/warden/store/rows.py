"""What the store hands back beyond `Memory`: plain, typed, immutable records.

These serve `warden explain`, the admin API, outbox delivery and crash recovery. They
are values only: `codec.py` builds them from database rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from warden.model import DecisionKind, Event, Verb, WorkspaceId
from warden.spend.accrual import Point


class Outcome(StrEnum):
    """Where an action stands."""

    PENDING = "pending"  # begun, not finished: after a crash, recovery looks at these
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a fresh read no longer justified it
    PLANNED = "planned"  # dry run: recorded, never carried out
    ABANDONED = "abandoned"  # recovery found it moot (the workspace gone, no longer due)


RELEASES_KEY = frozenset({Outcome.FAILED, Outcome.SKIPPED, Outcome.ABANDONED})


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceRow:
    """What the store knows of one workspace, for explain and the admin API."""

    provider: str
    native_id: str
    name: str | None
    owner: str | None
    first_seen_at: datetime
    running_since: datetime | None
    started_at: datetime | None
    last_state: str | None
    last_seen_at: datetime | None
    snoozed_until: datetime | None
    stopped_by: str | None
    stopped_at: datetime | None
    last_snapshot: Mapping[str, Any] | None
    kept_alive_at: datetime | None = None
    kept_alive_until: datetime | None = None
    kept_alive_by: str | None = None

    @property
    def id(self) -> WorkspaceId:
        return WorkspaceId(self.provider, self.native_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRecord:
    """One action as recorded under its idempotency key."""

    key: str
    workspace: WorkspaceId
    policy: str
    verb: Verb
    reason: str
    requested_at: datetime
    finished_at: datetime | None
    outcome: Outcome
    error: str | None
    dry_run: bool
    details: Mapping[str, Any] = field(default_factory=dict)  # what recovery needs


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDecision:
    """One recorded decision with the facts behind it."""

    id: int
    time: datetime
    workspace: WorkspaceId
    policy: str
    kind: DecisionKind
    verb: Verb | None
    reason: str
    due_at: datetime | None
    dry_run: bool
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event in the outbox, with its place in the delivery order."""

    seq: int
    id: str
    type: str
    subject: str
    time: datetime
    severity: str
    data: Mapping[str, Any]
    created_at: datetime

    def event(self) -> Event:
        return Event(
            id=self.id,
            type=self.type,
            subject=self.subject,
            time=self.time,
            data=self.data,
            severity=self.severity,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedAction:
    """An action a dry run would have taken, to be recorded once under its key."""

    key: str
    ws: WorkspaceId
    policy: str
    verb: Verb
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleState:
    """What one provider's cycles left behind, read at the start of the next."""

    provider: str
    last_success_at: datetime | None = None  # the `since` of the next cycle
    last_complete_at: datetime | None = None  # the last listing that read every page
    running: int | None = None  # how many ran in that listing: the blast radius's base
    unreachable_since: datetime | None = None  # an outage told, not yet over


@dataclass(frozen=True, slots=True)
class RunningSpan:
    """A workspace whose spend point says running: its open span runs from the point (at
    its rate) to `seen`, its last sighting (None when it was never seen)."""

    ws: WorkspaceId
    owner: str
    point: Point
    seen: datetime | None
