"""What the status page shows, read from the store once per request.

Everything here is read (the store's tables, the budgets' standings as the last review
left them, the outlook of `policy.upcoming`), never written; what a read-only reader
may not see (snooze and keep-alive links) never gets in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from warden.budget.evaluate import Standing
from warden.budget.keeper import BudgetKeeper
from warden.events.sinks import headline
from warden.events.snooze import without_snooze_links
from warden.model import Memory, State, Workspace, WorkspaceId
from warden.policy.decide import Rules, kept_alive_until
from warden.policy.selector import covers
from warden.policy.upcoming import Due, upcoming
from warden.spend.savings import savings_of
from warden.store import Store

if TYPE_CHECKING:
    from warden.policy.loader import PolicySet

RECENT_EVENTS = 15
DUE_SHOWN = 15
SAVINGS_DAYS = 30
STATES = tuple(str(s) for s in State)


class PollStatus(Protocol):
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def unreachable(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProviderLine:
    """One provider of the fleet: its workspaces by state, and its last poll."""

    provider: str
    kind: str
    counts: Mapping[str, int]
    last_poll: datetime | None
    reachable: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class KeptAliveLine:
    workspace: str
    name: str
    owner: str
    until: datetime  # as asked
    held: Mapping[str, datetime]  # policy → until when it holds


@dataclass(frozen=True, slots=True)
class EventLine:
    seq: int
    time: datetime
    severity: str
    type: str
    headline: str
    reason: str


@dataclass(frozen=True, slots=True)
class SavingsDay:
    day: date
    avoided: Decimal
    hours: Decimal
    stops: int


@dataclass(slots=True)
class StatusView:
    """Everything one render of the page needs."""

    now: datetime
    role: str
    fleet: list[ProviderLine] = field(default_factory=list)
    due: list[Due] = field(default_factory=list)
    budgets: list[Standing] = field(default_factory=list)
    kept_alive: list[KeptAliveLine] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    savings: list[SavingsDay] = field(default_factory=list)
    horizon: timedelta = timedelta(hours=8)
    dry_run: bool = False

    @property
    def savings_total(self) -> Decimal:
        return sum((d.avoided for d in self.savings), Decimal(0))


async def status_view(
    store: Store,
    policies: PolicySet,
    statuses: Mapping[str, PollStatus],
    *,
    now: datetime,
    role: str,
    dry_run: bool,
) -> StatusView:
    """Read what the page shows, as of `now`."""
    snapshots = await store.snapshots()
    memory: dict[WorkspaceId, Memory] = {}
    for provider in policies.providers:
        memory |= await store.load_memory(provider)
    rules = Rules(policies.policies, policies.schedules, policies.settings)
    standings = await BudgetKeeper(store).current(policies.budgets, now=now)
    horizon = policies.settings.savings_horizon
    today = now.date()
    days = await savings_of(
        store,
        by="all",
        per="day",
        first=today - timedelta(days=SAVINGS_DAYS - 1),
        last=today,
        horizon=horizon,
        now=now,
    )
    by_day = {d.period: d for d in days}
    return StatusView(
        now=now,
        role=role,
        fleet=_fleet(policies, snapshots, statuses),
        due=upcoming(rules, list(snapshots.values()), memory, standings, now=now)[:DUE_SHOWN],
        budgets=sorted(standings, key=lambda s: (-s.percent, s.budget.name, s.scope)),
        kept_alive=_kept_alive(rules, snapshots, memory, now),
        events=[_event_line(e, snapshots) for e in await store.latest_events(RECENT_EVENTS)],
        savings=[
            SavingsDay(
                day=day,
                avoided=by_day[day].avoided if day in by_day else Decimal(0),
                hours=by_day[day].hours if day in by_day else Decimal(0),
                stops=by_day[day].stops if day in by_day else 0,
            )
            for day in (today - timedelta(days=n) for n in reversed(range(SAVINGS_DAYS)))
        ],
        horizon=horizon,
        dry_run=dry_run,
    )


def _fleet(
    policies: PolicySet,
    snapshots: Mapping[WorkspaceId, Workspace],
    statuses: Mapping[str, PollStatus],
) -> list[ProviderLine]:
    counts: dict[str, Counter[str]] = {name: Counter() for name in policies.providers}
    for ws in snapshots.values():
        if ws.id.provider in counts:
            counts[ws.id.provider][str(ws.state)] += 1
    lines = []
    for name, config in sorted(policies.providers.items()):
        status = statuses.get(name)
        lines.append(
            ProviderLine(
                provider=name,
                kind=config.type,
                counts=dict(counts[name]),
                last_poll=status.last_success_at if status is not None else None,
                reachable=status is not None and not status.unreachable,
            )
        )
    return lines


def _kept_alive(
    rules: Rules,
    snapshots: Mapping[WorkspaceId, Workspace],
    memory: Mapping[WorkspaceId, Memory],
    now: datetime,
) -> list[KeptAliveLine]:
    found = []
    for ws_id, mem in memory.items():
        ws = snapshots.get(ws_id)
        if ws is None or mem.kept_alive_until is None or mem.kept_alive_until <= now:
            continue
        held = {
            p.name: until
            for p in rules.policies
            if covers(p, ws) and (until := kept_alive_until(p, mem, now)) is not None
        }
        found.append(
            KeptAliveLine(
                workspace=str(ws_id),
                name=ws.name,
                owner=ws.owner,
                until=mem.kept_alive_until,
                held=held,
            )
        )
    return sorted(found, key=lambda k: (k.until, k.workspace))


def _event_line(event: Any, snapshots: Mapping[WorkspaceId, Workspace]) -> EventLine:
    """An event in a line: the workspace by its name (its id is in `warden events`)."""
    data = without_snooze_links(dict(event.data))
    ref = data.get("workspace")
    if isinstance(ref, str) and "/" in ref:
        snapshot = snapshots.get(WorkspaceId.parse(ref))
        if snapshot is not None:
            data["workspace"] = snapshot.name
    reason = data.get("reason") or data.get("error") or data.get("held_because") or ""
    return EventLine(
        seq=event.seq,
        time=event.time,
        severity=event.severity,
        type=event.type,
        headline=headline({"type": event.type, "subject": event.subject, "data": data}),
        reason=str(reason),
    )


__all__ = ["StatusView", "status_view"]
