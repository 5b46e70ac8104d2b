"""The CloudEvents envelope and the JSON Schemas of every event type.

Every type in the catalogue has a schema; every event the catalogue's producers make,
and every event a real daemon writes while it warns, stops, extends, loses and finds
a provider and reloads its policies, validates against it; so do the examples in
docs/events.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import START
from tests.events_rig import CHECKER, PUBLIC_URL, check_schema, decision, stopped, warned
from warden.budget.freshness import Freshness, Source
from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.events.dispatcher import dead_letter_event
from warden.events.envelope import cloud_event, encode, explain_url, source_for
from warden.events.schemas import DATA_SCHEMAS, ENVELOPE, all_schemas, data_schema, event_schema
from warden.model import Decision, DecisionKind, Event, Verb, WorkspaceId
from warden.settings import Settings
from warden.sim.coder import CoderSim
from warden.store.deliveries import Queued

DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"
check = check_schema


# ---------------------------------------------------------------- the envelope


def test_an_event_is_a_structured_mode_cloudevent() -> None:
    event = stopped("ws-1", START)
    document = cloud_event(event, source=source_for("warden-1.example"))
    assert document == {
        "specversion": "1.0",
        "id": event.id,
        "source": "warden://warden-1.example",
        "type": "warden.workspace.stopped",
        "subject": "coder-prod/ws-1",
        "time": "2026-11-24T10:00:00Z",
        "datacontenttype": "application/json",
        "severity": "warning",
        "data": dict(event.data),
    }


def test_a_public_url_adds_the_explain_link_beside_other_links() -> None:
    event = warned("ws 1", START, links={"snooze": f"{PUBLIC_URL}/snooze/t"})
    data = cloud_event(event, source="warden://x", public_url=PUBLIC_URL + "/")["data"]
    assert data["links"] == {
        "snooze": f"{PUBLIC_URL}/snooze/t",
        "explain": f"{PUBLIC_URL}/v1/workspaces/coder-prod/ws%201/explain",
    }
    assert "links" not in cloud_event(stopped("ws-1", START), source="warden://x")["data"]


def test_an_event_about_no_workspace_has_no_explain_link() -> None:
    event = ev.new_event(
        ev.POLICY_LOADED, "policies", now=START, data={"policies": [], "fingerprint": "f"}
    )
    assert "links" not in cloud_event(event, source="warden://x", public_url=PUBLIC_URL)["data"]


def test_fields_named_like_secrets_never_leave() -> None:
    event = stopped("ws-1", START, facts={"token": "abc", "nested": [{"api_key": "k", "ok": 1}]})
    data = cloud_event(event, source="warden://x")["data"]
    assert data["facts"] == {"token": "[redacted]", "nested": [{"api_key": "[redacted]", "ok": 1}]}


def test_the_same_event_encodes_to_the_same_bytes() -> None:
    event = warned("ws-1", START)
    first = encode(cloud_event(event, source="warden://x", public_url=PUBLIC_URL))
    assert first == encode(cloud_event(event, source="warden://x", public_url=PUBLIC_URL))
    assert json.loads(first)["data"]["reason"] == "idle_for 2h5m ≥ 2h"


def test_a_naive_time_is_refused() -> None:
    event = Event(id="1", type=ev.POLICY_LOADED, subject="policies", time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        cloud_event(event, source="warden://x")


def test_the_source_is_a_warden_uri() -> None:
    assert source_for("host-1/replica 2") == "warden://host-1%2Freplica%202"
    assert explain_url("https://w.example/", WorkspaceId("p", "a/b")) == (
        "https://w.example/v1/workspaces/p/a%2Fb/explain"
    )


# ---------------------------------------------------------------- schemas


def test_every_catalogued_type_has_a_schema_and_severity() -> None:
    assert set(DATA_SCHEMAS) == set(ev.SEVERITY)
    for schema in all_schemas().values():
        CHECKER.check_schema(schema)


def _configure_decision(now: datetime) -> Decision:
    """A lifecycle policy's decision, as decide() makes it from a Mage snapshot."""
    from tests.factories import rules, workspace
    from warden.policy.decide import decide
    from warden.policy.models import Policy

    hooks = {"post_start": {"command": ["echo", "ready"], "hook_path": "hooks/post.py"}}
    snapshot = workspace(
        "analytics-dev", now=now, provider="mage-prod", facts={"lifecycle_config": hooks}
    )
    keep = Policy.model_validate({"name": "mage-idle", "lifecycle": {"max_idle": "2h"}})
    [configure] = decide(rules(keep), [snapshot], {}, now=now, since=None)
    return configure


def _from_the_catalogue() -> list[Event]:
    """One or more events of each type, built the way their producers build them."""
    now = START
    due = now + timedelta(minutes=15)
    warn = decision(DecisionKind.WARN, due_at=due)
    act = decision()
    done = ev.decision_data(act) | {"idempotency_key": "coder-prod/ws-1|idle-dev|stop|x"}
    extend = Decision(
        kind=DecisionKind.ACT,
        workspace=act.workspace,
        policy="max-lifetime",
        verb=Verb.EXTEND,
        reason="running_for 12h ≥ 12h",
        extend_to=now + timedelta(hours=2),
        facts={"running_for": "12h"},
    )
    ref = str(act.workspace)
    # A day budget in Europe/Berlin: its window is local midnight to midnight, in UTC.
    day_start = datetime(2026, 11, 23, 23, tzinfo=UTC)
    day_end = day_start + timedelta(days=1)
    org = {  # budget_facts() of an org-wide budget
        "budget": "org-daily",
        "per": "all",
        "scope": "all",
        "window_start": day_start.isoformat(),
        "window_end": day_end.isoformat(),
        "timezone": "Europe/Berlin",
        "spent": "1843.120000",
        "limit": "2000",
        "currency": "USD",
    }
    agents = WorkspaceId("agents", "770e8400-e29b-41d4-a716-446655440000")
    replaced = {  # the agent-run adapter's Replaced.to_json()
        "workspace": agents.native,
        "previous": {"max_concurrent_runs": 8},
        "applied": {"max_concurrent_runs": 1},
    }
    throttle = Decision(
        kind=DecisionKind.ACT,
        workspace=agents,
        policy="org-daily",
        verb=Verb.THROTTLE,
        reason="budget org-daily: all spent $1843.12 of $2000.00 this day (Europe/Berlin), "
        "90% reached",
        facts=org
        | {
            "threshold": "90%",
            "throttle": {"max_concurrent_runs": "1"},
            "episode": day_start.isoformat(),
        },
    )
    restore = Decision(
        kind=DecisionKind.ACT,
        workspace=agents,
        policy="org-daily",
        verb=Verb.RESTORE,
        reason=f"budget org-daily: its window ended at {day_end.isoformat()}",
        facts={
            "budget": "org-daily",
            "scope": "all",
            "window_start": day_start.isoformat(),
            "window_end": day_end.isoformat(),
            "episode": f"{day_start.isoformat()}#undo",
            "replaced": replaced,
        },
    )
    kill = Decision(
        kind=DecisionKind.ACT,
        workspace=agents,
        policy="office-hours",
        verb=Verb.KILL_SWITCH,
        reason="closed",
        facts={"schedule": "office-berlin", "open": False},
    )
    fresh = Freshness(
        (
            Source("observed:coder-prod", "observed", "coder-prod", now - timedelta(minutes=2)),
            Source("feed:agent-runs", "feed", "agents", now - timedelta(hours=3)),
        )
    ).json(now)
    events = [
        ev.decision_event(warn, now=now),
        ev.new_event(
            ev.WORKSPACE_KEPT_ALIVE,
            ref,
            now=now,
            data={
                "workspace": ref,
                "provider": "coder-prod",
                "owner": "alice",
                "until": (now + timedelta(hours=12)).isoformat(),
                "asked": "12h",
                "kept_alive_by": "owner link",
                "held": {"idle-dev": (now + timedelta(hours=8)).isoformat()},
            },
        ),
        ev.new_event(
            ev.SPEND_FEED_LAGGING,
            "feeds/agent-runs",
            now=now,
            data={
                "feed": "agent-runs",
                "provider": "agents",
                "as_of": (now - timedelta(hours=3)).isoformat(),
                "read_at": now.isoformat(),
                "lag_seconds": 10800,
                "lag": "3h",
                "max_lag": "2h",
                "reason": "its data is 3h old",
            },
        ),
        ev.new_event(
            ev.OWNER_DIGEST,
            "owners/alice",
            now=now,
            data={
                "digest": "owners-weekly",
                "notify": ["team-chat"],
                "owner": "alice",
                "period": "week",
                "period_start": day_start.isoformat(),
                "period_end": (day_start + timedelta(days=7)).isoformat(),
                "currency": "USD",
                "spent": "12.500000",
                "ran": [{"workspace": ref, "name": "ws-1", "spent": "12.500000"}],
                "ran_count": 1,
                "stops": 1,
                "avoided": "8.000000",
                "stopped": [
                    {
                        "workspace": ref,
                        "name": "ws-1",
                        "stops": 1,
                        "hours": "8.00",
                        "avoided": "8.000000",
                    }
                ],
                "due": [
                    {
                        "workspace": ref,
                        "name": "ws-1",
                        "policy": "idle-dev",
                        "action": "stop",
                        "due_at": due.isoformat(),
                    }
                ],
                "due_count": 1,
                "budgets": [],
            },
        ),
        ev.decision_event(
            warn,
            now=now,
            extra={"links": {"snooze": f"{PUBLIC_URL}/snooze/x"}, "snooze": {"by": "1h", "max": 3}},
        ),
        ev.decision_event(decision(DecisionKind.CLEAR, verb=None), now=now),
        ev.decision_event(decision(DecisionKind.SKIP), now=now),
        ev.new_event(ev.WORKSPACE_STOPPED, ref, now=now, data=done | {"dry_run": False}),
        ev.new_event(
            ev.WORKSPACE_RESUMED,
            ref,
            now=now,
            data=ev.decision_data(decision(verb=Verb.RESUME)) | {"idempotency_key": "k"},
        ),
        ev.new_event(
            ev.WORKSPACE_EXTENDED,
            ref,
            now=now,
            data=ev.decision_data(extend) | {"idempotency_key": "k"},
        ),
        ev.new_event(
            ev.WORKSPACE_CONFIGURED,
            "mage-prod/analytics-dev",
            now=now,
            data=ev.decision_data(_configure_decision(now)) | {"idempotency_key": "k"},
        ),
        ev.new_event(
            ev.WORKSPACE_NOTIFIED, ref, now=now, data=ev.decision_data(decision(verb=Verb.NOTIFY))
        ),
        ev.new_event(
            ev.WORKSPACE_SKIPPED,
            ref,
            now=now,
            data=done | {"error": "skipped: a fresh read no longer justifies it (stopped)"},
        ),
        ev.new_event(
            ev.WORKSPACE_SNOOZED,
            ref,
            now=now,
            data={
                "workspace": ref,
                "provider": "coder-prod",
                "policy": "idle-dev",
                "action": "stop",
                "was_due_at": due.isoformat(),
                "snoozed_until": (due + timedelta(hours=1)).isoformat(),
                "by": "1h",
                "snoozes_used": 1,
                "snoozes_max": 3,
            },
        ),
        ev.new_event(ev.ACTION_PLANNED, ref, now=now, data=done | {"dry_run": True}),
        ev.new_event(
            ev.ACTION_FAILED, ref, now=now, data=done | {"error": "coder-prod: stop: HTTP 500"}
        ),
        ev.new_event(
            ev.ACTION_HELD,
            "coder-prod",
            now=now,
            data={
                "provider": "coder-prod",
                "policy": "idle-dev",
                "held_because": "8 stops or resumes in one cycle exceed the limit of 5",
                "workspaces": [ref],
                "running": 10,
                "limit": 5,
                "usual": 0,
                "release": "warden holds release coder-prod idle-dev",
            },
        ),
        ev.new_event(
            ev.ACTION_RELEASED,
            "coder-prod",
            now=now,
            data={
                "provider": "coder-prod",
                "policy": "idle-dev",
                "held_since": now.isoformat(),
                "held_because": "8 stops or resumes in one cycle exceed the limit of 5",
                "released_by": "admin",
            },
        ),
        ev.new_event(
            ev.ACTION_RECOVERED,
            ref,
            now=now,
            data={
                "workspace": ref,
                "provider": "coder-prod",
                "policy": "idle-dev",
                "action": "stop",
                "idempotency_key": "k",
                "outcome": "abandoned",
                "reason": "no longer due: a fresh read no longer justifies it (stopped)",
            },
        ),
        ev.new_event(
            ev.REPLICA_FENCED,
            "replicas/warden-1-4242",
            now=now,
            data={"replica": "warden-1-4242", "lease": "warden-leader", "epoch": 7},
        ),
        ev.new_event(
            ev.KILL_SWITCH_ENGAGED,
            str(agents),
            now=now,
            data=ev.decision_data(kill)
            | {"idempotency_key": f"{agents}|office-hours|kill_switch|x", "dry_run": False},
        ),
        ev.new_event(
            ev.KILL_SWITCH_RELEASED,
            str(agents),
            now=now,
            data=ev.decision_data(replace(kill, verb=Verb.RELEASE, reason="opening"))
            | {"idempotency_key": f"{agents}|office-hours|release_kill_switch|x", "dry_run": False},
        ),
        ev.new_event(
            ev.PROVIDER_UNREACHABLE,
            "coder-prod",
            now=now,
            data={"provider": "coder-prod", "error": "HTTP 503"},
        ),
        ev.new_event(ev.PROVIDER_RECOVERED, "coder-prod", now=now, data={"provider": "coder-prod"}),
        ev.new_event(
            ev.PROVIDER_ANSWER_REJECTED,
            ref,
            now=now,
            data={"provider": "coder-prod", "workspace": ref, "reason": "unknown status"},
        ),
        ev.new_event(
            ev.PROVIDER_ANSWER_REJECTED,
            "coder-prod",
            now=now,
            data={"provider": "coder-prod", "workspace": None, "reason": "page 2 malformed"},
        ),
        ev.new_event(
            ev.POLICY_REJECTED, "policies", now=now, data={"problems": ["policies/a.yaml:3:5: bad"]}
        ),
        ev.new_event(
            ev.POLICY_LOADED,
            "policies",
            now=now,
            data={"policies": ["idle-dev"], "fingerprint": "ab12"},
        ),
        ev.new_event(
            ev.SPEND_INCOMPLETE,
            ref,
            now=now,
            data={
                "workspace": ref,
                "provider": "coder-prod",
                "reason": "no price for GPU type a100",
            },
        ),
        ev.new_event(
            ev.SPEND_FEED_FAILED,
            "feeds/agent-runs",
            now=now,
            data={
                "feed": "agent-runs",
                "provider": "agents",
                "error": "HTTP 503: Service Unavailable",
            },
        ),
        ev.new_event(
            ev.POLICY_DEGRADED,
            "agents",
            now=now,
            data={
                "provider": "agents",
                "policy": "agents-office-hours",
                "action": "stop",
                "missing": "kill_switch (Scale plan)",
                "error": "agents: HTTP 403",
            },
        ),
        ev.new_event(  # an admin's snooze, through the API: every policy at once
            ev.WORKSPACE_SNOOZED,
            ref,
            now=now,
            data={
                "workspace": ref,
                "provider": "coder-prod",
                "snoozed_until": now.isoformat(),
                "by": "1h",
                "snoozed_by": "admin",
            },
        ),
        ev.new_event(
            ev.WORKSPACE_THROTTLED,
            str(agents),
            now=now,
            data=ev.decision_data(throttle)
            | {
                "idempotency_key": f"{agents}|org-daily|throttle|{day_start.isoformat()}",
                "replaced": replaced,
            },
        ),
        ev.new_event(
            ev.WORKSPACE_RESTORED,
            str(agents),
            now=day_end + timedelta(minutes=1),
            data=ev.decision_data(restore)
            | {"idempotency_key": f"{agents}|org-daily|restore|{day_start.isoformat()}#undo"},
        ),
        ev.new_event(  # a threshold that only notifies, below 100%: a warning
            ev.BUDGET_THRESHOLD_CROSSED,
            "budgets/team-daily/alice",
            now=now,
            data=org
            | {
                "policy": "team-daily",
                "budget": "team-daily",
                "per": "owner",
                "scope": "alice",
                "spent": "41.250000",
                "limit": "50",
                "threshold": 0,
                "at": "80%",
                "percent": "82.5%",
                "forecast": False,
                "projected": "54.250000",
                "action": "notify",
                "notify": ["team-chat"],
            }
            | fresh,
        ),
        ev.new_event(  # a threshold that acts: critical
            ev.BUDGET_THRESHOLD_CROSSED,
            "budgets/org-daily/all",
            now=now,
            data=org
            | {
                "policy": "org-daily",
                "threshold": 1,
                "at": "90%",
                "percent": "92.2%",
                "forecast": False,
                "projected": "2298.120000",
                "action": "throttle",
                "notify": ["oncall"],
            }
            | fresh,
            severity="critical",
        ),
        ev.new_event(
            ev.BUDGET_WINDOW_RESET,
            "budgets/org-daily/all",
            now=day_end + timedelta(minutes=1),
            data={
                "policy": "org-daily",
                "budget": "org-daily",
                "scope": "all",
                "window_start": day_start.isoformat(),
                "window_end": day_end.isoformat(),
                "fired": [0, 1],
                "undo": [str(agents)],
            },
        ),
        ev.new_event(
            ev.SINK_DISABLED,
            "sinks/audit",
            now=now,
            data={
                "sink": "audit",
                "sink_type": "webhook",
                "status": 410,
                "reason": "HTTP 410: gone",
            },
        ),
        dead_letter_event(
            "audit",
            Queued(seq=1, event=stopped("ws-1", now), attempts=11, batch=None, next_attempt_at=now),
            "HTTP 500: oops",
            now,
        ),
    ]
    return events


def test_every_event_the_catalogue_can_produce_validates() -> None:
    events = _from_the_catalogue()
    assert {e.type for e in events} == set(ev.SEVERITY)
    for event in events:
        check(event)


def test_the_schemas_refuse_what_is_wrong() -> None:
    """Not vacuous: a missing field, a wrong constant, a bad workspace are errors."""
    good = dict(stopped("ws-1", START).data)
    for bad in (
        {k: v for k, v in good.items() if k != "workspace"},
        good | {"action": "resume"},
        good | {"workspace": "no-slash"},
        good | {"dry_run": "no"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, data_schema(ev.WORKSPACE_STOPPED))
    document = cloud_event(stopped("ws-1", START), source="warden://x")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"specversion": "0.3"}, ENVELOPE)


# ---------------------------------------------------------------- a real daemon's events

TOKEN = "events-test-token-0123456789"
POLICIES = """
version: 1
settings: {max_actions_per_cycle: 2, max_percent_per_cycle: 100%%}
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}", poll_interval: 60s}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
  - name: max-lifetime
    when: {running_for: 12h}
    extend: {by: 2h, max: 1}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, CoderSim, ManualClock, Path]]:
    clock = ManualClock(START)
    sim = CoderSim(token=TOKEN, clock=clock, build_seconds=2.0)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"url": str(server.make_url("/"))})
        settings = Settings(policy_path=[policy_file], state_dir=tmp_path / "state")
        env = {"CODER_TOKEN": TOKEN}

        async def no_wait(_seconds: float) -> None:
            return None

        running = Daemon(
            settings, policies=load_policy_set(settings, env), clock=clock, env=env, sleep=no_wait
        )
        async with running:
            yield running, sim, clock, policy_file


def _add(sim: CoderSim, clock: ManualClock, name: str, **fields: Any) -> None:
    base = {
        "owner": "alice",
        "template": "python",
        "status": "running",
        "last_used_at": clock() - timedelta(minutes=5),
        "started_at": clock() - timedelta(hours=1),
    }
    sim.add_workspace(name=name, **(base | fields))


async def test_every_event_a_real_daemon_writes_validates(daemon) -> None:
    running, sim, clock, policy_file = daemon
    _add(sim, clock, "idle", last_used_at=clock() - timedelta(hours=3))
    _add(sim, clock, "old", started_at=clock() - timedelta(hours=13))
    bad = sim.add_workspace(
        name="bad",
        owner="bob",
        template="python",
        status="running",
        last_used_at=clock(),
        started_at=clock(),
    )
    sim.corrupt_workspace(bad, "latest_build.status", "exploding")
    await running.run_cycle()
    clock.advance(minutes=16)
    await running.run_cycle()
    sim.fail_next("GET", "/api/v2/workspaces", status=503)
    clock.advance(minutes=1)
    await running.run_cycle()
    clock.advance(minutes=1)
    await running.run_cycle()
    for i in range(3):
        _add(sim, clock, f"storm-{i}", last_used_at=clock() - timedelta(hours=5))
    clock.advance(minutes=1)
    await running.run_cycle()
    policy_file.write_text(policy_file.read_text() + "\n  - {name: broken}\n")
    await running.reload()
    policy_file.write_text(
        policy_file.read_text().replace("\n  - {name: broken}\n", "\n").replace("max: 1", "max: 2")
    )
    await running.reload()
    assert running.store is not None
    events = [s.event() for s in await running.store.events_after(0, limit=10_000)]
    seen = {e.type for e in events}
    assert {
        ev.WORKSPACE_WARNED,
        ev.WORKSPACE_STOPPED,
        ev.WORKSPACE_EXTENDED,
        ev.PROVIDER_UNREACHABLE,
        ev.PROVIDER_RECOVERED,
        ev.PROVIDER_ANSWER_REJECTED,
        ev.POLICY_REJECTED,
        ev.POLICY_LOADED,
    } <= seen
    for event in events:
        check(event)


# ---------------------------------------------------------------- the documentation


def _documented() -> list[tuple[str, dict[str, Any]]]:
    """(type, example) for each `### warden.…` heading of docs/events.md and its JSON."""
    text = DOCS.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(
        r"^### `(warden\.[a-z_.]+)`\n(.*?)```json\n(.*?)```", text, re.S | re.M
    ):
        found.append((match.group(1), json.loads(match.group(3))))
    return found


def test_the_documentation_has_a_valid_example_of_every_event_type() -> None:
    documented = _documented()
    assert sorted(t for t, _ in documented) == sorted(ev.SEVERITY)
    for event_type, example in documented:
        assert example["type"] == event_type
        CHECKER(event_schema(event_type), format_checker=CHECKER.FORMAT_CHECKER).validate(example)
        assert datetime.fromisoformat(example["time"].replace("Z", "+00:00")).tzinfo == UTC
