"""Where each budget stands: spend per scope value in the current window, and which
thresholds that spend (or its projection) newly reaches. Pure.

Spend comes in as charges (a workspace's spend in the window, from the ledger or a
spend feed); scope values come from the workspaces' latest snapshots. A threshold
fires once per window and scope value: spend within a window only grows, and what
fired is remembered in the store, so 99.9% → 100.1% → 99.9% cannot flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from warden.budget.freshness import Freshness
from warden.budget.state import WindowState
from warden.budget.windows import Window, window_at
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import BudgetPolicy, Threshold
from warden.policy.selector import covers
from warden.spend.accrual import Point

HUNDRED = Decimal(100)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Charge:
    """Spend of one workspace in a window (a feed's spend without one: native id "-").

    Scope values come from the workspace's latest snapshot; `owner` (what the ledger
    recorded) stands in when there is none. `person` overrides the owner: a fed agent
    run counts toward whoever ran it, not the workspace's owner. `burn` marks spend
    incurred in the last hour that no running rate describes (a feed's): it counts as
    an hourly burn too.
    """

    ws: WorkspaceId
    owner: str
    amount: Decimal
    person: str | None = None
    burn: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """One budget's window for one scope value: spend, burn and what newly fired."""

    budget: BudgetPolicy
    scope: str
    window: Window
    spent: Decimal
    burn_per_hour: Decimal  # what the scope's running workspaces cost per hour now
    spenders: tuple[tuple[WorkspaceId, Decimal], ...]  # largest first
    fired: tuple[int, ...] = ()  # threshold indices reached for the first time now
    state: WindowState | None = field(default=None, compare=False)
    # How old the facts behind `spent` are (budget/freshness.py); set by the keeper.
    freshness: Freshness = field(default=Freshness(), compare=False)

    @property
    def limit(self) -> Decimal:
        return self.budget.budget.limit_usd

    @property
    def percent(self) -> Decimal:
        return self.spent * HUNDRED / self.limit

    def projected(self, now: datetime) -> Decimal:
        """Spend at the window's end if the scope keeps burning as it does now."""
        hours = Decimal(self.window.remaining(now) // timedelta(seconds=1)) / Decimal(3600)
        return self.spent + self.burn_per_hour * hours

    def reaches(self, threshold: Threshold, now: datetime) -> bool:
        line = self.limit * threshold.at / HUNDRED
        amount = self.projected(now) if threshold.forecast else self.spent
        return amount >= line


def scope_of(per: str, ws: Workspace) -> str | None:
    """The scope value `ws` counts toward; None when the platform did not say."""
    if per == "all":
        return "all"
    if per == "workspace":
        return str(ws.id)
    if per == "owner":
        return ws.owner or None
    if per == "provider":
        return ws.id.provider
    if per == "project":
        return ws.project
    if per == "template":
        return ws.template
    return ws.labels.get(per.removeprefix("label:"))


def stand_in(ws: WorkspaceId, owner: str, now: datetime) -> Workspace:
    """What is known of a workspace no snapshot describes (gone, or a feed's spend)."""
    return Workspace(id=ws, name=ws.native, owner=owner, state=State.UNKNOWN, observed_at=now)


def standings(
    budget: BudgetPolicy,
    charges: Iterable[Charge],
    snapshots: Mapping[WorkspaceId, Workspace],
    rates: Mapping[WorkspaceId, Decimal],
    states: Mapping[str, WindowState],
    *,
    now: datetime,
) -> list[Standing]:
    """Every scope value of `budget` with spend or a running workspace in this window."""
    window = window_at(budget.budget.window, budget.budget.timezone, now)
    spend: dict[str, dict[WorkspaceId, Decimal]] = {}
    burn: dict[str, Decimal] = {}
    for charge in charges:
        scope = _counted(budget, _subject(charge, snapshots, now))
        if scope is not None:
            by_ws = spend.setdefault(scope, {})
            by_ws[charge.ws] = by_ws.get(charge.ws, Decimal(0)) + charge.amount
            if charge.burn:
                burn[scope] = burn.get(scope, Decimal(0)) + charge.amount
    for ws in snapshots.values():
        scope = _counted(budget, ws)
        if scope is not None and ws.state is State.RUNNING and ws.id in rates:
            burn[scope] = burn.get(scope, Decimal(0)) + rates[ws.id]
            spend.setdefault(scope, {})
    return [
        _standing(budget, scope, window, by_ws, burn.get(scope, Decimal(0)), states.get(scope), now)
        for scope, by_ws in sorted(spend.items())
    ]


def _subject(
    charge: Charge, snapshots: Mapping[WorkspaceId, Workspace], now: datetime
) -> Workspace:
    """The workspace a charge belongs to, as owned by whoever the charge counts toward."""
    ws = snapshots.get(charge.ws) or stand_in(charge.ws, charge.owner, now)
    if charge.person is None or ws.owner == charge.person:
        return ws
    return replace(ws, owner=charge.person)


def _counted(budget: BudgetPolicy, ws: Workspace) -> str | None:
    return scope_of(budget.budget.per, ws) if covers(budget, ws) else None


def _standing(
    budget: BudgetPolicy,
    scope: str,
    window: Window,
    by_ws: Mapping[WorkspaceId, Decimal],
    burn: Decimal,
    state: WindowState | None,
    now: datetime,
) -> Standing:
    spenders = tuple(sorted(by_ws.items(), key=lambda item: (-item[1], item[0])))
    standing = Standing(
        budget=budget,
        scope=scope,
        window=window,
        spent=sum(by_ws.values(), Decimal(0)),
        burn_per_hour=burn,
        spenders=spenders,
        state=state,
    )
    already = set(state.fired) if state is not None else set()
    fired = tuple(
        i
        for i, threshold in enumerate(budget.thresholds)
        if i not in already and standing.reaches(threshold, now)
    )
    return replace(standing, fired=fired)


def observed_by_scope(
    budget: BudgetPolicy,
    snapshots: Mapping[WorkspaceId, Workspace],
    points: Mapping[WorkspaceId, Point],
    polls: Mapping[str, datetime | None],
) -> dict[str, dict[str, datetime | None]]:
    """Per scope value, per provider of its workspaces: up to when observed spend reaches
    (the provider's last poll, or the oldest running workspace's last spend point)."""
    found: dict[str, dict[str, datetime | None]] = {}
    for ws in snapshots.values():
        if not covers(budget, ws):
            continue
        scope = scope_of(budget.budget.per, ws)
        if scope is None:
            continue
        provider = ws.id.provider
        by_provider = found.setdefault(scope, {})
        reach = by_provider[provider] if provider in by_provider else polls.get(provider)
        point = points.get(ws.id)
        if point is not None and reach is not None:
            reach = min(reach, point.at)
        by_provider[provider] = reach
    return found


def acting_thresholds(budget: BudgetPolicy, fired: Sequence[int]) -> list[Threshold]:
    """The fired thresholds that act (stop, throttle, kill switch), in order."""
    return [budget.thresholds[i] for i in fired if budget.thresholds[i].do != "notify"]
