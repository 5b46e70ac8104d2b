"""Owner digests, the pure parts: which period is due when, where a digest goes, and how
Slack shows it (the simulated day in tests/test_owners_day.py sends real ones)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.conftest import START
from warden.digests import last_period
from warden.events import catalogue as ev
from warden.events.routing import Routes, group_key
from warden.events.sinks import headline, slack_message
from warden.model import Event
from warden.policy.models import Digest, LogSink, SlackSink, WebhookSink


@pytest.mark.parametrize(
    ("every", "at", "zone", "now", "first", "last", "send_at"),
    [
        (
            "day",
            "00:05",
            "UTC",
            datetime(2026, 11, 25, 0, 10, tzinfo=UTC),
            date(2026, 11, 24),
            date(2026, 11, 24),
            datetime(2026, 11, 25, 0, 5, tzinfo=UTC),
        ),
        # A weekly digest of Mon 16 to Sun 22, sent Monday 23rd at 09:00 in Berlin (08:00 UTC).
        (
            "week",
            "09:00",
            "Europe/Berlin",
            datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
            date(2026, 11, 16),
            date(2026, 11, 22),
            datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        ),
        (
            "month",
            "09:00",
            "UTC",
            datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
            date(2026, 11, 1),
            date(2026, 11, 30),
            datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ),
    ],
)
def test_the_period_that_ended_last_and_when_it_is_sent(
    every: str, at: str, zone: str, now: datetime, first: date, last: date, send_at: datetime
) -> None:
    digest = Digest.model_validate({"every": every, "at": at, "timezone": zone, "notify": ["x"]})
    period, when = last_period(digest, now)
    assert (period.first, period.last, when) == (first, last, send_at)


def _digest_event() -> Event:
    return ev.new_event(
        ev.OWNER_DIGEST,
        "owners/alice",
        now=START,
        data={
            "digest": "owners-weekly",
            "notify": ["team-chat"],
            "owner": "alice",
            "period": "week",
            "period_start": "2026-11-16T00:00:00+00:00",
            "period_end": "2026-11-23T00:00:00+00:00",
            "currency": "USD",
            "spent": "41.25",
            "ran": [{"workspace": "coder/ws-1", "name": "alice-gpu", "spent": "38"}],
            "ran_count": 3,
            "stops": 3,
            "avoided": "36",
            "stopped": [
                {
                    "workspace": "coder/ws-1",
                    "name": "alice-gpu",
                    "stops": 3,
                    "hours": "18.00",
                    "avoided": "36",
                }
            ],
            "due": [
                {
                    "workspace": "coder/ws-2",
                    "name": "alice-web",
                    "policy": "idle-dev",
                    "action": "stop",
                    "due_at": "2026-11-24T10:15:00+00:00",
                }
            ],
            "due_count": 1,
            "budgets": [],
        },
    )


def test_slack_renders_a_digest_readably() -> None:
    from warden.events.envelope import cloud_event

    event = cloud_event(_digest_event(), source="warden://x")
    message = slack_message([event], now=START)
    text = message["blocks"][0]["text"]["text"]
    assert message["text"] == "Weekly digest for alice: $41.25 spent, $36.00 avoided by Warden"
    assert "Mon 16 Nov to Sun 22 Nov 2026 (UTC)" in text
    assert "• alice-gpu — $38.00" in text
    assert "…and 2 more" in text
    assert "*Warden stopped* (3 stops)" in text
    assert "• alice-gpu — stopped 18.00 h, $36.00 avoided" in text
    assert "• alice-web: stop at Tue 10:15 UTC (policy `idle-dev`)" in text
    assert headline(event) == message["text"]


def test_a_digest_goes_to_its_sinks_and_the_log_only_and_alone() -> None:
    sinks = {
        "team-chat": SlackSink(type="slack", url="https://hooks.slack.test/x"),  # type: ignore[arg-type]
        "audit": WebhookSink(type="webhook", url="https://audit.test/"),  # type: ignore[arg-type]
        "journal": LogSink(type="log"),
    }
    routes = Routes.of(sinks, [])
    assert routes.sinks_for(_digest_event()) == ["journal", "team-chat"]
    assert group_key("slack", _digest_event()) is None
