"""One provider's spend for one observation: rates, accruals and the events they raise.

Pure: the daemon reads the points, calls `accruals_for`, and writes the result with
`Store.account_spend` in one transaction. A running workspace without a price is
told once (`warden.spend.incomplete`) and its spend marked incomplete, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from warden.events import catalogue as ev
from warden.model import Event, State, WorkspaceId
from warden.policy.models import Pricing
from warden.providers.base import Observation
from warden.spend.accrual import LEDGER_ZONE, Accrual, Entry, Point, accrue, open_spans
from warden.spend.pricing import hourly_rate


def accruals_for(
    observation: Observation,
    points: Mapping[WorkspaceId, Point],
    pricing: Pricing | None,
    *,
    now: datetime,
    max_gap: timedelta,
    zones: Sequence[str] = (LEDGER_ZONE,),
    seen_at: Callable[[WorkspaceId], datetime | None] = lambda _ws: None,
) -> tuple[list[Accrual], list[Event]]:
    """What each observed workspace cost since its last point, and the new points.

    Entries are by day in each of `zones` (UTC and the budgets' time zones). A
    workspace that runs on at the same rate on the same day, observed without a gap
    (the last listing that showed it, `seen_at`, within `max_gap`), accrues nothing yet: its span
    stays open (`open_spans`), so that a steady fleet writes no ledger row per poll.
    Its rate or state changing, a midnight, or a gap close it.

    A provider without a `pricing` entry is not accounted at all (the agent-run
    platform's spend, say, comes from elsewhere); within a priced provider, a running
    workspace without a price is incomplete.
    """
    accruals: list[Accrual] = []
    events: list[Event] = []
    if pricing is None:
        return accruals, events
    for ws in observation.workspaces:
        running = ws.state is State.RUNNING
        rate = hourly_rate(ws, pricing) if running else None
        point = Point(now, running, rate.per_hour if rate else None)
        previous = points.get(ws.id)
        missing = rate is not None and rate.per_hour is None
        newly = previous is None or previous.per_hour is not None or not previous.running
        if rate is not None and rate.missing is not None and newly:
            events.append(
                ev.new_event(
                    ev.SPEND_INCOMPLETE,
                    ws.ref,
                    now=now,
                    data={"workspace": ws.ref, "provider": ws.id.provider, "reason": rate.missing},
                )
            )
        seen = seen_at(ws.id)
        watched = seen is not None and now - seen <= max_gap
        if previous is not None and watched and open_spans(previous, point, zones):
            continue
        entries = accrue(previous, point, max_gap=max_gap, zones=zones, seen_at=seen)
        if missing and not entries:  # a row that says so, so that the day reads incomplete
            entries = [
                Entry(now.astimezone(ZoneInfo(zone)).date(), Decimal(0), False, zone)
                for zone in zones
            ]
        accruals.append(Accrual(ws.id, ws.owner, point, entries, incomplete=missing))
    return accruals, events
