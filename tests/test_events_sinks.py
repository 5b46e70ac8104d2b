"""What the Slack and PagerDuty sinks say, as pure functions of the CloudEvents."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import START
from tests.events_rig import PUBLIC_URL, recovered, stopped, unreachable, warned
from warden.events import catalogue as ev
from warden.events.envelope import cloud_event
from warden.events.sinks import incident_of, pagerduty_event, slack_message


def ce(event, **options):
    return cloud_event(event, source="warden://w1", public_url=PUBLIC_URL, **options)


def test_slack_escapes_what_slack_would_read_as_markup() -> None:
    event = stopped("ws-1", START, reason="load <5% & idle > 2h")
    [section, _context] = slack_message([ce(event)], now=START)["blocks"]
    assert "Why: load &lt;5% &amp; idle &gt; 2h" in section["text"]["text"]


def test_a_group_of_outages_names_providers_not_workspaces() -> None:
    message = slack_message(
        [ce(unreachable("coder-prod", START)), ce(unreachable("mage", START))], now=START
    )
    assert message["text"] == "2 providers are unreachable"
    body = message["blocks"][0]["text"]["text"]
    assert "• coder-prod" in body
    assert "• mage" in body


def test_a_group_of_warnings_gives_each_workspace_its_own_snooze_link() -> None:
    links = [f"{PUBLIC_URL}/snooze/t{i}" for i in range(2)]
    events = [
        ce(warned(f"ws-{i}", START, links={"snooze": link}, snooze={"by": "1h", "max": 1}))
        for i, link in enumerate(links)
    ]
    message = slack_message(events, now=START + timedelta(minutes=5))
    assert message["text"] == "2 workspaces will be stopped (policy idle-dev)"
    body = message["blocks"][0]["text"]["text"]
    for i, link in enumerate(links):
        assert f"• coder-prod/ws-{i} — 2026-11-24 10:15 UTC (in 10m) — <{link}|Snooze 1h>" in body


def test_pagerduty_resolves_with_nothing_but_the_key() -> None:
    body = pagerduty_event("rk", [ce(recovered("coder-prod", START))])
    assert body == {
        "routing_key": "rk",
        "event_action": "resolve",
        "dedup_key": "warden/provider-unreachable/coder-prod",
    }


def test_pagerduty_triggers_carry_what_on_call_needs() -> None:
    event = ce(unreachable("coder-prod", START))
    body = pagerduty_event("rk", [event])
    assert body["event_action"] == "trigger"
    assert body["payload"] == {
        "summary": "Provider coder-prod is unreachable: coder-prod: list: HTTP 503: down",
        "source": "coder-prod",
        "severity": "critical",
        "timestamp": "2026-11-24T10:00:00Z",
        "class": ev.PROVIDER_UNREACHABLE,
        "custom_details": event["data"],
        "component": "coder-prod",
    }


def test_a_long_summary_is_cut_to_pagerdutys_limit() -> None:
    event = stopped("ws-1", START, reason="x" * 5000)
    assert len(pagerduty_event("rk", [ce(event)])["payload"]["summary"]) <= 1024


def test_every_other_event_triggers_an_incident_named_by_type_and_subject() -> None:
    assert incident_of(ce(stopped("ws-1", START))) == (
        "trigger",
        "warden/workspace-stopped/coder-prod/ws-1",
    )
