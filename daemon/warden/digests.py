"""Owner digests: once a period, one event per owner with what ran, what it cost, what
Warden stopped and what that avoided, and what is due.

A `digests:` entry covers whole UTC days (a day, an ISO week or a month: the ledger's
days, as `warden spend` counts them) and is sent on the first day after its period at
`at` in its `timezone`, to its `notify` sinks only (`warden.owner.digest`, routed by
`data.notify`). Each period is told once: the events and the record that they were
sent are written in one transaction (`Store.claim_digest`), so a restart, or a second
replica, never sends it twice. A period missed while Warden was down is sent late,
once; the periods before it are not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from warden.budget.keeper import BudgetKeeper, standing_json
from warden.budget.windows import first_day_of, next_first_day
from warden.events import catalogue as ev
from warden.model import Event, Workspace, WorkspaceId
from warden.policy.models import BudgetPolicy, Digest
from warden.policy.selector import matches
from warden.spend.report import feed_rows
from warden.spend.savings import Saving, savings_of
from warden.store import Store

log = structlog.get_logger(__name__)

SHOWN = 10  # workspaces, stops and due items listed per owner; the rest are counted


@dataclass(frozen=True, slots=True)
class Period:
    """The whole UTC days a digest covers: [start, end)."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), UTC)


def last_period(digest: Digest, now: datetime) -> tuple[Period, datetime]:
    """The period that ended most recently before `now`, and when it is to be sent."""
    current = first_day_of(digest.every, now.date())
    previous = first_day_of(digest.every, current - timedelta(days=1))
    hour, minute = (int(part) for part in digest.at.split(":"))
    send_at = datetime.combine(current, time(hour, minute), ZoneInfo(digest.timezone))
    period = Period(previous, next_first_day(digest.every, previous) - timedelta(days=1))
    return period, send_at.astimezone(UTC)


@dataclass(slots=True)
class OwnerDigest:
    """One owner's period, as the event tells it."""

    owner: str
    spent: Decimal = Decimal(0)
    ran: dict[WorkspaceId, Decimal] = field(default_factory=dict)
    stopped: list[Saving] = field(default_factory=list)  # by workspace
    due: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def avoided(self) -> Decimal:
        return sum((s.avoided for s in self.stopped), Decimal(0))


async def send_digests(
    store: Store,
    digests: Mapping[str, Digest],
    budgets: Sequence[BudgetPolicy],
    *,
    horizon: timedelta,
    now: datetime,
) -> int:
    """Tell each digest whose period has ended and whose time has come; how many were."""
    sent = 0
    for name, digest in sorted(digests.items()):
        period, send_at = last_period(digest, now)
        if now < send_at:
            continue
        events = await digest_events(store, name, digest, period, budgets, horizon=horizon, now=now)
        if await store.claim_digest(
            name, start=period.start, end=period.end, now=now, events=events
        ):
            log.info("digest.sent", digest=name, owners=len(events), first=str(period.first))
            sent += 1
    return sent


async def digest_events(
    store: Store,
    name: str,
    digest: Digest,
    period: Period,
    budgets: Sequence[BudgetPolicy],
    *,
    horizon: timedelta,
    now: datetime,
) -> list[Event]:
    """One `warden.owner.digest` per owner with something to tell, by owner name."""
    snapshots = await store.snapshots()
    owners: dict[str, OwnerDigest] = {}

    def of(owner: str) -> OwnerDigest:
        return owners.setdefault(owner, OwnerDigest(owner))

    def told(ws: WorkspaceId) -> bool:
        snapshot = snapshots.get(ws)
        return matches(digest.match, snapshot) if snapshot is not None else _matches_all(digest)

    rows = await store.spend_between(period.first, period.last, "UTC", until=period.end)
    fed = feed_rows(await store.spend_records_between(period.start, period.end), day=period.first)
    for row in [*rows, *fed]:
        if row.owner and told(row.ws) and row.amount:
            owner = of(row.owner)
            owner.spent += row.amount
            owner.ran[row.ws] = owner.ran.get(row.ws, Decimal(0)) + row.amount
    stops = await savings_of(
        store,
        by="workspace",
        per="day",
        first=period.first,
        last=period.last,
        horizon=horizon,
        now=now,
    )
    for saving in _by_workspace(stops):
        ws = WorkspaceId.parse(saving.scope)
        snapshot = snapshots.get(ws)
        if snapshot is not None and snapshot.owner and told(ws):
            of(snapshot.owner).stopped.append(saving)
    await _add_due(store, owners, snapshots, told, now)
    standings = await BudgetKeeper(store).current(
        [b for b in budgets if b.budget.per == "owner"], now=now
    )
    for standing in standings:
        if standing.scope in owners:
            owners[standing.scope].budgets.append(standing_json(standing, now))
    return [_event(name, digest, period, owners[owner], snapshots, now) for owner in sorted(owners)]


def _matches_all(digest: Digest) -> bool:
    return digest.match == type(digest.match)()


def _by_workspace(days: Iterable[Saving]) -> list[Saving]:
    """The savings rows of a period (one per day and workspace) summed per workspace."""
    found: dict[str, Saving] = {}
    for day in days:
        total = found.setdefault(day.scope, Saving(period=day.period, scope=day.scope))
        total.avoided += day.avoided
        total.stopped_for += day.stopped_for
        total.stops += day.stops
        total.unpriced += day.unpriced
    return sorted(found.values(), key=lambda s: (-s.avoided, s.scope))


async def _add_due(
    store: Store,
    owners: dict[str, OwnerDigest],
    snapshots: Mapping[WorkspaceId, Workspace],
    told: Any,
    now: datetime,
) -> None:
    """What falls due for each owner's workspaces: warnings given, keep-alives ending."""
    for ws, warning in await store.due_warnings():
        snapshot = snapshots.get(ws)
        if snapshot is None or not snapshot.owner or not told(ws):
            continue
        owners.setdefault(snapshot.owner, OwnerDigest(snapshot.owner)).due.append(
            {
                "workspace": str(ws),
                "name": snapshot.name,
                "policy": warning.policy,
                "action": str(warning.verb),
                "due_at": warning.due_at.isoformat(),
            }
        )
    for row in await store.list_workspaces(limit=100_000):
        until = row.kept_alive_until
        snapshot = snapshots.get(row.id)
        if until is None or until <= now or snapshot is None or not snapshot.owner:
            continue
        if told(row.id):
            owners.setdefault(snapshot.owner, OwnerDigest(snapshot.owner)).due.append(
                {
                    "workspace": str(row.id),
                    "name": snapshot.name,
                    "policy": None,
                    "action": "keep_alive_ends",
                    "due_at": until.isoformat(),
                }
            )


def _event(
    name: str,
    digest: Digest,
    period: Period,
    owner: OwnerDigest,
    snapshots: Mapping[WorkspaceId, Workspace],
    now: datetime,
) -> Event:
    def label(ws: WorkspaceId) -> str:
        snapshot = snapshots.get(ws)
        return snapshot.name if snapshot is not None else ws.native

    ran = sorted(owner.ran.items(), key=lambda item: (-item[1], item[0]))
    due = sorted(owner.due, key=lambda d: d["due_at"])
    data = {
        "digest": name,
        "notify": list(digest.notify),
        "owner": owner.owner,
        "period": digest.every,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "currency": "USD",
        "spent": str(owner.spent),
        "ran": [
            {"workspace": str(ws), "name": label(ws), "spent": str(amount)}
            for ws, amount in ran[:SHOWN]
        ],
        "ran_count": len(ran),
        "stops": sum(s.stops for s in owner.stopped),
        "avoided": str(owner.avoided),
        "stopped": [
            {
                "workspace": s.scope,
                "name": label(WorkspaceId.parse(s.scope)),
                "stops": s.stops,
                "hours": str(s.hours),
                "avoided": str(s.avoided),
            }
            for s in owner.stopped[:SHOWN]
        ],
        "due": due[:SHOWN],
        "due_count": len(due),
        "budgets": [
            {
                key: budget[key]
                for key in ("budget", "scope", "spent", "limit", "percent", "as_of", "lag_seconds")
            }
            for budget in owner.budgets
        ],
    }
    return ev.new_event(ev.OWNER_DIGEST, f"owners/{owner.owner}", now=now, data=data)


__all__ = ["Period", "digest_events", "last_period", "send_digests"]
