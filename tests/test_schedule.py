"""Schedules: parsing `open` specs, is_open, edges_between, next_edge; tables and properties."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from warden.policy.models import Schedule
from warden.policy.schedule import (
    DAYS,
    Edge,
    Window,
    edges_between,
    is_open,
    next_edge,
    parse_holidays,
    parse_window,
)

S = timedelta(seconds=1)
OFFICE = Schedule(timezone="Europe/Berlin", open=["Mon-Fri 08:00-19:00"], holidays="DE")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def schedule(*specs: str, timezone: str = "Europe/Berlin", holidays: str | None = None):
    return Schedule(timezone=timezone, open=list(specs), holidays=holidays)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("Mon-Fri 08:00-19:00", Window(frozenset(range(5)), 8 * 60, 19 * 60)),
        ("Sat 10:00-14:00", Window(frozenset({5}), 10 * 60, 14 * 60)),
        ("Mon,Wed,Fri 09:00-17:00", Window(frozenset({0, 2, 4}), 9 * 60, 17 * 60)),
        ("mon-wed,SAT 09:00-24:00", Window(frozenset({0, 1, 2, 5}), 9 * 60, 24 * 60)),
        ("Fri-Mon 22:00-06:00", Window(frozenset({4, 5, 6, 0}), 22 * 60, 6 * 60)),
        ("  Sun 00:00-24:00 ", Window(frozenset({6}), 0, 24 * 60)),
    ],
)
def test_parse_window(spec, expected):
    assert parse_window(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Mon-Fri", 'expected days and hours such as "Mon-Fri 08:00-19:00", got "Mon-Fri"'),
        (
            "Mo-Fr 08:00-19:00",
            'unknown day "Mo" in "Mo-Fr 08:00-19:00" '
            "(expected Mon, Tue, Wed, Thu, Fri, Sat, Sun; ranges like Mon-Fri)",
        ),
        (
            "Mon 8:00-19:00",
            'expected a time between 00:00 and 23:59 such as 08:00, got "8:00" in "Mon 8:00-19:00"',
        ),
        (
            "Mon 24:00-02:00",
            'expected a time between 00:00 and 23:59 such as 08:00, got "24:00" in "Mon 24:00-02:00"',
        ),
        (
            "Mon 08:00-24:30",
            'expected a time between 00:00 and 24:00 such as 08:00, got "24:30" in "Mon 08:00-24:30"',
        ),
        (
            "Mon 08:60-09:00",
            'expected a time between 00:00 and 23:59 such as 08:00, got "08:60" in "Mon 08:60-09:00"',
        ),
        ("Mon 08:00-08:00", 'the window opens and closes at the same time in "Mon 08:00-08:00"'),
    ],
)
def test_parse_window_errors_say_what_was_expected(spec, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_window(spec)


def test_the_schedule_model_rejects_a_bad_window():
    with pytest.raises(ValidationError, match='unknown day "Mo"'):
        schedule("Mon-Fri 08:00-19:00", "Mo 10:00-12:00")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("DE", ("DE", None)), ("US-CA", ("US", "CA")), ("DE-BY", ("DE", "BY"))],
)
def test_parse_holidays(code, expected):
    assert parse_holidays(code) == expected


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "XX",
            'expected a country code such as DE, or country-subdivision such as DE-BY, got "XX"',
        ),
        (
            "de",
            'expected a country code such as DE, or country-subdivision such as DE-BY, got "de"',
        ),
        ("DE-ZZ", 'DE has no subdivision "ZZ" (expected one of: BB, BE, '),
    ],
)
def test_unknown_holiday_calendars_are_errors(code, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse_holidays(code)


# ---------------------------------------------------------------- is_open


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(utc(2026, 11, 24, 6, 59, 59), False, id="Tue 07:59:59 CET"),
        pytest.param(utc(2026, 11, 24, 7, 0), True, id="Tue 08:00 CET: an opening is open"),
        pytest.param(utc(2026, 11, 24, 17, 59, 59), True, id="Tue 18:59:59 CET"),
        pytest.param(utc(2026, 11, 24, 18, 0), False, id="Tue 19:00 CET: a closing is closed"),
        pytest.param(utc(2026, 11, 28, 10, 0), False, id="Saturday"),
        pytest.param(utc(2026, 12, 24, 10, 0), True, id="Christmas Eve is a working day"),
        pytest.param(utc(2026, 12, 25, 10, 0), False, id="Christmas Day is a public holiday"),
        pytest.param(utc(2026, 4, 3, 10, 0), False, id="Good Friday"),
        pytest.param(utc(2026, 12, 28, 7, 0), True, id="Monday after Christmas"),
        pytest.param(utc(2026, 3, 27, 7, 0), True, id="Fri 08:00 CET before spring DST"),
        pytest.param(utc(2026, 3, 30, 5, 59), False, id="Mon 07:59 CEST after spring DST"),
        pytest.param(utc(2026, 3, 30, 6, 0), True, id="Mon 08:00 CEST"),
        pytest.param(utc(2026, 3, 30, 16, 59), True, id="Mon 18:59 CEST"),
        pytest.param(utc(2026, 3, 30, 17, 0), False, id="Mon 19:00 CEST"),
        pytest.param(utc(2026, 10, 23, 6, 0), True, id="Fri 08:00 CEST before autumn DST"),
        pytest.param(utc(2026, 10, 26, 6, 30), False, id="Mon 07:30 CET after autumn DST"),
        pytest.param(utc(2026, 10, 26, 7, 0), True, id="Mon 08:00 CET"),
    ],
)
def test_office_hours_in_berlin(at, expected):
    assert is_open(OFFICE, at) is expected


def test_is_open_accepts_any_aware_time_zone():
    new_york = timezone(timedelta(hours=-5))
    assert is_open(OFFICE, datetime(2026, 11, 24, 2, 0, tzinfo=new_york))  # 08:00 in Berlin
    assert not is_open(OFFICE, datetime(2026, 11, 24, 1, 59, tzinfo=new_york))


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        is_open(OFFICE, datetime(2026, 11, 24, 10, 0))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(utc(2026, 11, 27, 21, 0), True, id="Fri 22:00"),
        pytest.param(utc(2026, 11, 27, 23, 30), True, id="Sat 00:30, still Friday's window"),
        pytest.param(utc(2026, 11, 28, 4, 59), True, id="Sat 05:59"),
        pytest.param(utc(2026, 11, 28, 5, 0), False, id="Sat 06:00"),
        pytest.param(utc(2026, 11, 26, 21, 30), False, id="Thu 22:30: not a Friday"),
        pytest.param(utc(2026, 11, 28, 21, 30), False, id="Sat 22:30: the window is Friday's"),
    ],
)
def test_a_window_crossing_midnight_belongs_to_its_start_day(at, expected):
    assert is_open(schedule("Fri 22:00-06:00"), at) is expected


def test_a_us_subdivision_calendar_closes_observed_holidays():
    california = schedule("Mon-Fri 09:00-17:00", timezone="America/Los_Angeles", holidays="US-CA")
    assert not is_open(california, utc(2026, 7, 3, 18, 0))  # Independence Day, observed
    assert is_open(california, utc(2026, 7, 6, 18, 0))


# ---------------------------------------------------------------- edges


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        pytest.param(
            utc(2026, 3, 27, 12, 0),
            utc(2026, 3, 30, 12, 0),
            [Edge(utc(2026, 3, 27, 18, 0), False), Edge(utc(2026, 3, 30, 6, 0), True)],
            id="spring DST weekend: 19:00 CET, then 08:00 CEST",
        ),
        pytest.param(
            utc(2026, 10, 23, 12, 0),
            utc(2026, 10, 26, 12, 0),
            [Edge(utc(2026, 10, 23, 17, 0), False), Edge(utc(2026, 10, 26, 7, 0), True)],
            id="autumn DST weekend: 19:00 CEST, then 08:00 CET",
        ),
        pytest.param(
            utc(2026, 12, 23, 12, 0),
            utc(2026, 12, 29, 0, 0),
            [
                Edge(utc(2026, 12, 23, 18, 0), False),
                Edge(utc(2026, 12, 24, 7, 0), True),
                Edge(utc(2026, 12, 24, 18, 0), False),
                Edge(utc(2026, 12, 28, 7, 0), True),
                Edge(utc(2026, 12, 28, 18, 0), False),
            ],
            id="Christmas Day is closed all day",
        ),
        pytest.param(
            utc(2026, 11, 24, 18, 0),
            utc(2026, 11, 25, 7, 0),
            [Edge(utc(2026, 11, 25, 7, 0), True)],
            id="(since, until]: an edge at since is out, at until is in",
        ),
        pytest.param(utc(2026, 11, 25, 7, 0), utc(2026, 11, 24, 7, 0), [], id="empty range"),
    ],
)
def test_edges_between(since, until, expected):
    assert edges_between(OFFICE, since, until) == expected


def test_a_window_crossing_midnight_over_daylight_saving_keeps_wall_times():
    night = schedule("Sat 22:00-06:00")
    assert edges_between(night, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 12, 0)) == [
        Edge(utc(2026, 3, 28, 21, 0), True),  # 22:00 CET
        Edge(utc(2026, 3, 29, 4, 0), False),  # 06:00 CEST: seven hours later
    ]
    assert edges_between(night, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 12, 0)) == [
        Edge(utc(2026, 10, 24, 20, 0), True),  # 22:00 CEST
        Edge(utc(2026, 10, 25, 5, 0), False),  # 06:00 CET: nine hours later
    ]


def test_a_holiday_cuts_a_window_that_crosses_into_it_at_midnight():
    night = schedule("Thu 22:00-06:00", holidays="DE")
    assert edges_between(night, utc(2026, 12, 24, 12, 0), utc(2026, 12, 25, 12, 0)) == [
        Edge(utc(2026, 12, 24, 21, 0), True),
        Edge(utc(2026, 12, 24, 23, 0), False),  # 00:00 on Christmas Day
    ]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        pytest.param(
            ("Mon 08:00-12:00", "Mon 12:00-19:00"),
            [Edge(utc(2026, 11, 23, 8, 0), True), Edge(utc(2026, 11, 23, 19, 0), False)],
            id="adjacent windows make no edge between them",
        ),
        pytest.param(
            ("Mon-Fri 08:00-19:00", "Mon 18:00-22:00"),
            [Edge(utc(2026, 11, 23, 8, 0), True), Edge(utc(2026, 11, 23, 22, 0), False)],
            id="overlapping windows merge",
        ),
        pytest.param(
            ("Sun 20:00-24:00", "Mon 00:00-02:00"),
            [Edge(utc(2026, 11, 22, 20, 0), True), Edge(utc(2026, 11, 23, 2, 0), False)],
            id="24:00 meets 00:00 the next day",
        ),
    ],
)
def test_windows_that_touch_merge(specs, expected):
    monday = schedule(*specs, timezone="UTC")
    assert edges_between(monday, utc(2026, 11, 22, 12, 0), utc(2026, 11, 23, 23, 0)) == expected


def test_a_gap_in_the_clock_leaves_a_window_inside_it_empty():
    gap = schedule("Sun 02:00-03:00")  # 2026-03-29 02:00-03:00 does not exist in Berlin
    assert edges_between(gap, utc(2026, 3, 28, 0, 0), utc(2026, 3, 30, 0, 0)) == []


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(utc(2026, 11, 24, 10, 0), Edge(utc(2026, 11, 24, 18, 0), False), id="Tue"),
        pytest.param(
            utc(2026, 11, 27, 18, 0), Edge(utc(2026, 11, 30, 7, 0), True), id="after Friday"
        ),
        pytest.param(
            utc(2026, 12, 24, 18, 0), Edge(utc(2026, 12, 28, 7, 0), True), id="over Christmas"
        ),
    ],
)
def test_next_edge(after, expected):
    assert next_edge(OFFICE, after) == expected


def test_next_edge_looks_fourteen_days_ahead_only():
    always = schedule("Mon-Sun 00:00-24:00")
    assert next_edge(always, utc(2026, 11, 24, 10, 0)) is None
    assert is_open(always, utc(2026, 11, 24, 10, 0))
    with_holidays = schedule("Mon-Sun 00:00-24:00", holidays="DE")
    assert next_edge(with_holidays, utc(2026, 12, 14, 10, 0)) == Edge(
        utc(2026, 12, 24, 23, 0), False
    )


# ---------------------------------------------------------------- properties

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@st.composite
def windows(draw: st.DrawFn) -> str:
    days = draw(st.sets(st.sampled_from(DAYS), min_size=1, max_size=7))
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(1, 24 * 60).filter(lambda end: end != start))
    ordered = ",".join(d for d in DAYS if d in days)
    return f"{ordered} {start // 60:02}:{start % 60:02}-{end // 60:02}:{end % 60:02}"


schedules = st.builds(
    lambda zone, specs, holidays: Schedule(timezone=zone, open=specs, holidays=holidays),
    st.sampled_from(ZONES),
    st.lists(windows(), min_size=1, max_size=3),
    st.sampled_from([None, "DE", "US-CA"]),
)
instants = st.datetimes(
    min_value=datetime(2026, 1, 1),
    max_value=datetime(2027, 12, 31),
    timezones=st.just(UTC),
)


@settings(max_examples=150, deadline=None)
@given(schedules, instants)
def test_edges_alternate_and_agree_with_is_open(s: Schedule, since: datetime):
    """Just after an opening it is open, just after a closing it is closed; edges alternate."""
    until = since + timedelta(days=8)
    edges = edges_between(s, since, until)
    for earlier, later in pairwise(edges):
        assert earlier.at < later.at
        assert earlier.opening is not later.opening
    for edge in edges:
        assert is_open(s, edge.at) is edge.opening
        assert is_open(s, edge.at + S) is edge.opening
        assert is_open(s, edge.at - S) is not edge.opening
    if edges:
        assert edges[0].opening is not is_open(s, since)
        assert next_edge(s, since) == edges[0]
