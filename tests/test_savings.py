"""Savings, pure: a stop's rate times the time it was seen stopped, at most the horizon,
split at UTC midnight and summed per scope and period; never a guess."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from warden.model import WorkspaceId
from warden.spend.savings import Stop, avoided_total, default_first_day, savings, savings_text

EVENING = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
H = timedelta(hours=1)
DAY = date(2026, 11, 24)


def stop(
    *,
    at: datetime = EVENING,
    rate: str | None = "2",
    ran_again: datetime | None = None,
    state: str | None = "stopped",
    seen: datetime | None = None,
    owner: str = "alice",
    policy: str = "idle-dev",
    native: str = "ws-1",
) -> Stop:
    return Stop(
        ws=WorkspaceId("coder", native),
        owner=owner,
        policy=policy,
        verb="stop",
        stopped_at=at,
        per_hour=None if rate is None else Decimal(rate),
        ran_again_at=ran_again,
        last_state=state,
        last_seen_at=seen,
    )


def total(
    stops: list[Stop], *, horizon: timedelta = 8 * H, until: datetime | None = None
) -> Decimal:
    rows = savings(
        stops,
        by="all",
        per="month",
        first=DAY - timedelta(days=1),
        last=DAY + timedelta(days=2),
        horizon=horizon,
        until=until or EVENING + 48 * H,
    )
    return sum((r.avoided for r in rows), Decimal(0))


def test_a_stop_counts_until_the_workspace_ran_again() -> None:
    assert total([stop(ran_again=EVENING + 3 * H)]) == Decimal(6)


def test_the_horizon_cuts_a_long_stop_short() -> None:
    assert total([stop(ran_again=EVENING + 30 * H)]) == Decimal(16)
    assert total([stop(ran_again=EVENING + 30 * H)], horizon=2 * H) == Decimal(4)


def test_a_workspace_still_stopped_counts_only_up_to_the_last_poll_that_saw_it() -> None:
    assert total([stop(seen=EVENING + 90 * timedelta(minutes=1))]) == Decimal(3)


def test_a_stop_never_seen_afterwards_or_seen_running_counts_nothing() -> None:
    assert total([stop(seen=None)]) == 0
    assert total([stop(state="running", seen=EVENING + 5 * H)]) == 0
    assert total([stop(state="unknown", seen=EVENING + 5 * H)]) == 0


def test_a_stop_without_a_rate_is_counted_but_avoids_no_money() -> None:
    rows = savings(
        [stop(rate=None, ran_again=EVENING + H)],
        by="policy",
        per="day",
        first=DAY,
        last=DAY,
        horizon=8 * H,
        until=EVENING + 5 * H,
    )
    [row] = rows
    assert (row.avoided, row.stops, row.unpriced, row.hours) == (0, 1, 1, Decimal("1.00"))


def test_avoided_time_is_split_at_utc_midnight_and_stops_count_where_they_were_made() -> None:
    rows = savings(
        [stop(ran_again=EVENING + 6 * H)],  # 20:00 to 02:00
        by="owner",
        per="day",
        first=DAY,
        last=DAY + timedelta(days=1),
        horizon=8 * H,
        until=EVENING + 24 * H,
    )
    assert [(r.period, r.avoided, r.stops) for r in rows] == [
        (DAY, Decimal(8), 1),
        (DAY + timedelta(days=1), Decimal(4), 0),
    ]


def test_scopes_and_periods_group_the_days() -> None:
    stops = [
        stop(owner="alice", policy="idle-dev", native="a", ran_again=EVENING + H),
        stop(owner="bob", policy="nights", native="b", rate="1", ran_again=EVENING + 2 * H),
        stop(
            owner="bob",
            policy="idle-dev",
            native="c",
            rate="1",
            at=EVENING - 48 * H,
            ran_again=EVENING - 47 * H,
        ),
    ]
    week = savings(
        stops,
        by="owner",
        per="week",
        first=DAY - timedelta(days=7),
        last=DAY,
        horizon=8 * H,
        until=EVENING + 5 * H,
    )
    assert [(r.period, r.scope, r.avoided) for r in week] == [
        (date(2026, 11, 16), "bob", Decimal(1)),  # Sunday the 22nd: the week before
        (date(2026, 11, 23), "alice", Decimal(2)),  # the week of Monday the 23rd
        (date(2026, 11, 23), "bob", Decimal(2)),
    ]
    by_policy = savings(
        stops,
        by="policy",
        per="month",
        first=date(2026, 11, 1),
        last=DAY,
        horizon=8 * H,
        until=EVENING + 5 * H,
    )
    assert {r.scope: r.avoided for r in by_policy} == {"idle-dev": Decimal(3), "nights": Decimal(2)}
    assert {r.period for r in by_policy} == {date(2026, 11, 1)}


def test_money_is_exact_to_the_microsecond() -> None:
    odd = stop(rate="0.416667", ran_again=EVENING + timedelta(minutes=7, seconds=3))
    expected = Decimal("0.416667") * Decimal(423_000_000) / Decimal(3_600_000_000)
    assert total([odd]) == expected


def test_the_total_by_provider_and_policy_is_what_metrics_report() -> None:
    totals = avoided_total(
        [stop(ran_again=EVENING + H), stop(policy="nights", native="b", ran_again=EVENING + 2 * H)],
        horizon=8 * H,
        until=EVENING + 24 * H,
    )
    assert totals == {("coder", "idle-dev"): Decimal(2), ("coder", "nights"): Decimal(4)}


@pytest.mark.parametrize(
    ("per", "last", "first"),
    [
        ("day", date(2026, 11, 24), date(2026, 10, 26)),
        ("week", date(2026, 11, 24), date(2026, 9, 7)),
        ("month", date(2026, 11, 24), date(2025, 12, 1)),
        ("month", date(2026, 12, 5), date(2026, 1, 1)),
    ],
)
def test_a_report_without_from_looks_back_30_days_12_weeks_or_12_months(
    per: str, last: date, first: date
) -> None:
    assert default_first_day(per, last) == first  # type: ignore[arg-type]


def test_the_table_names_the_horizon_and_the_unpriced() -> None:
    rows = savings(
        [stop(rate=None, ran_again=EVENING + H), stop(native="b", ran_again=EVENING + H)],
        by="all",
        per="day",
        first=DAY,
        last=DAY,
        horizon=8 * H,
        until=EVENING + 2 * H,
    )
    text = savings_text(rows, by="all", per="day", first=DAY, last=DAY, horizon=8 * H)
    assert "each stop counts at most 8h" in text
    assert "(1 unpriced)" in text
    assert text.splitlines()[-1].split() == ["total", "2.00"]
