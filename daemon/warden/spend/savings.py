"""Savings: the spend Warden's stops avoided, counted from what was seen. Pure.

Every stop Warden made (a policy's or a budget's, the kill switch included; never a
dry run) accrues avoided spend: the workspace's rate when Warden stopped it (its spend
point's, the same rate spend accrues at) times the time it stayed stopped afterwards,
until it ran again, at most the horizon (`settings.savings_horizon`, 8 h by default).

Why it is conservative:
- only what was seen counts: a workspace still stopped counts up to the last poll that
  saw it not running, not up to now; one that ran again, up to the start the platform
  reports (or the first poll that saw it running);
- the horizon cuts every stop short: a forgotten workspace would perhaps have run all
  week, but beyond a working day's length that is a guess, so it is not claimed;
- a stop without a known rate (a platform Warden does not price, such as the agent-run
  kill switch) avoids nothing in money: it is counted as a stop, `unpriced`;
- the model is spend's: running time at the running rate. What a platform keeps
  charging while stopped (disks) is in neither figure.

Avoided time is split at UTC midnight, as the ledger's days are, so that a day, an ISO
week or a month sums whole days. Money is Decimal throughout: rate times microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from warden.budget.windows import first_day_of
from warden.model import State, WorkspaceId
from warden.openapi import SAVINGS_PERIODS, SAVINGS_SCOPES
from warden.policy.durations import format_duration
from warden.spend.accrual import MICROSECONDS_PER_HOUR, split_by_day

if TYPE_CHECKING:
    from warden.store import Store

SavingsScope = Literal["workspace", "owner", "policy", "provider", "all"]
SavingsPeriod = Literal["day", "week", "month"]
SCOPES: tuple[SavingsScope, ...] = SAVINGS_SCOPES
PERIODS: tuple[SavingsPeriod, ...] = SAVINGS_PERIODS
# States in which a stopped workspace does not run (cost) yet: spend accrues only while
# running, so the avoided time runs on through these. A failed build ran nothing.
_STILL_STOPPED = frozenset(
    {str(State.STOPPED), str(State.STOPPING), str(State.STARTING), str(State.FAILED)}
)
CENT = Decimal("0.01")
HOURS = Decimal("0.01")  # hours are shown to this precision


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """One stop Warden made, and what is known of what followed (from the store)."""

    ws: WorkspaceId
    owner: str
    policy: str
    verb: str
    stopped_at: datetime
    per_hour: Decimal | None  # its rate when stopped; None when Warden did not price it
    ran_again_at: datetime | None  # when it next ran; None while it has not
    last_state: str | None  # the workspace's state at its last poll
    last_seen_at: datetime | None

    def seen_stopped_until(self) -> datetime:
        """How long it is known to have stayed stopped: until it ran again, else until
        the last poll that saw it stopped (the stop itself when none has)."""
        if self.ran_again_at is not None:
            return max(self.ran_again_at, self.stopped_at)
        if self.last_state in _STILL_STOPPED and self.last_seen_at is not None:
            return max(self.last_seen_at, self.stopped_at)
        return self.stopped_at

    def avoided_span(self, horizon: timedelta, until: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the time this stop counts, seen up to `until`."""
        end = min(self.seen_stopped_until(), self.stopped_at + horizon, until)
        return self.stopped_at, max(end, self.stopped_at)

    def scope(self, by: SavingsScope) -> str:
        if by == "workspace":
            return str(self.ws)
        if by == "owner":
            return self.owner
        if by == "policy":
            return self.policy
        if by == "provider":
            return self.ws.provider
        return "all"


@dataclass(slots=True)
class Saving:
    """What the stops of one scope avoided in one period (a day, week or month)."""

    period: date  # the period's first day (UTC)
    scope: str
    avoided: Decimal = Decimal(0)
    stopped_for: timedelta = timedelta(0)  # time counted, priced or not
    stops: int = 0  # stops made in this period
    unpriced: int = 0  # of those, stops without a rate: time counted, money not

    @property
    def hours(self) -> Decimal:
        return (Decimal(self.stopped_for // timedelta(seconds=1)) / 3600).quantize(HOURS)


def _money(rate: Decimal, span: timedelta) -> Decimal:
    return rate * Decimal(span // timedelta(microseconds=1)) / MICROSECONDS_PER_HOUR


def savings(
    stops: Iterable[Stop],
    *,
    by: SavingsScope,
    per: SavingsPeriod,
    first: date,
    last: date,
    horizon: timedelta,
    until: datetime,
) -> list[Saving]:
    """Avoided spend per period and scope from UTC day `first` to `last` (inclusive),
    as seen up to `until`; oldest period first, then the largest saving."""
    found: dict[tuple[date, str], Saving] = {}

    def bucket(day: date, scope: str) -> Saving:
        key = (first_day_of(per, day), scope)
        if key not in found:
            found[key] = Saving(period=key[0], scope=scope)
        return found[key]

    for stop in stops:
        scope = stop.scope(by)
        made = stop.stopped_at.date()
        if first <= made <= last:
            saving = bucket(made, scope)
            saving.stops += 1
            saving.unpriced += stop.per_hour is None
        start, end = stop.avoided_span(horizon, until)
        for day, span in split_by_day(start, end):
            if first <= day <= last:
                saving = bucket(day, scope)
                saving.stopped_for += span
                if stop.per_hour is not None:
                    saving.avoided += _money(stop.per_hour, span)
    return sorted(found.values(), key=lambda s: (s.period, -s.avoided, s.scope))


def avoided_total(
    stops: Iterable[Stop], *, horizon: timedelta, until: datetime
) -> dict[tuple[str, str], Decimal]:
    """Everything every stop avoided so far, by (provider, policy): for /metrics."""
    totals: dict[tuple[str, str], Decimal] = {}
    for stop in stops:
        start, end = stop.avoided_span(horizon, until)
        key = (stop.ws.provider, stop.policy)
        amount = _money(stop.per_hour, end - start) if stop.per_hour is not None else Decimal(0)
        totals[key] = totals.get(key, Decimal(0)) + amount
    return totals


async def savings_of(
    store: Store,
    *,
    by: SavingsScope,
    per: SavingsPeriod,
    first: date,
    last: date,
    horizon: timedelta,
    now: datetime,
) -> list[Saving]:
    """`savings` of the stops the store holds: the one read `warden savings`, the admin
    API and the status page share."""
    since = datetime.combine(first, time(0), UTC) - horizon  # a stop the day before counts
    stops = await store.stops(since=since)
    return savings(stops, by=by, per=per, first=first, last=last, horizon=horizon, until=now)


def default_first_day(per: SavingsPeriod, last: date) -> date:
    """The first day of a report ending `last` when none is given: 30 days, 12 weeks or
    12 months back."""
    if per == "day":
        return last - timedelta(days=29)
    if per == "week":
        return first_day_of("week", last) - timedelta(weeks=11)
    start = first_day_of("month", last)
    return date(start.year - (start.month <= 11), (start.month - 12) % 12 + 1, 1)


# ---------------------------------------------------------------- reports


def savings_json(
    rows: Sequence[Saving],
    *,
    by: SavingsScope,
    per: SavingsPeriod,
    first: date,
    last: date,
    horizon: timedelta,
) -> dict[str, object]:
    """The report as JSON-ready data; money as exact decimal strings."""
    return {
        "by": by,
        "per": per,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "horizon": format_duration(horizon),
        "currency": "USD",
        "total": str(sum((r.avoided for r in rows), Decimal(0))),
        "items": [
            {
                "period": r.period.isoformat(),
                "scope": r.scope,
                "avoided": str(r.avoided),
                "hours": str(r.hours),
                "stops": r.stops,
                "unpriced": r.unpriced,
            }
            for r in rows
        ],
    }


def savings_text(rows: Sequence[Saving], **report: object) -> str:
    """The report as `warden savings` prints it (`report`: as for `savings_json`)."""
    data = savings_json(rows, **report)  # type: ignore[arg-type]
    per, by = str(data["per"]), str(data["by"])
    lines = [
        f"avoided spend by {by} and {per} (UTC), {data['from']} to {data['to']}, USD "
        f"(each stop counts at most {data['horizon']}; stops count in the {per} they were made)",
        f"{per + ' of':<12} {by:<40} {'avoided':>10} {'hours':>8} {'stops':>6}",
    ]
    for r in rows:
        note = f"  ({r.unpriced} unpriced)" if r.unpriced else ""
        lines.append(
            f"{r.period.isoformat():<12} {r.scope:<40} {r.avoided.quantize(CENT):>10} "
            f"{r.hours:>8} {r.stops:>6}{note}"
        )
    if not rows:
        lines.append("no stops by Warden in this range")
    lines.append(f"{'total':<53} {Decimal(str(data['total'])).quantize(CENT):>10}")
    return "\n".join(lines)


__all__ = [
    "PERIODS",
    "SCOPES",
    "Saving",
    "SavingsPeriod",
    "SavingsScope",
    "Stop",
    "avoided_total",
    "default_first_day",
    "savings",
    "savings_json",
    "savings_of",
    "savings_text",
]
