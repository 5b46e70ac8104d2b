"""A simulated day of budgets over the simulators: time is moved, never waited for.

Coder workspaces of three owners burn money at known rates from local midnight in
Berlin; a per-owner daily budget warns at 80%, forecasts 100% and stops at 100%; an
org-wide budget over Coder turns on the agent-run platform's kill switch when it is
spent. Warden restarts at midday. At the next local midnight everything the budgets
did is undone, and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.explain import budget_line, explanation
from warden.model import Event, WorkspaceId
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim
from warden.sim.coder import CoderSim

CODER_TOKEN = "budget-day-coder-token-0123456789"
AGENTS_TOKEN = "budget-day-agents-token-0123456789"
MIDNIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 00:00 on Wednesday 25th in Berlin
BERLIN_DAY = date(2026, 11, 25)
STEP = timedelta(minutes=5)
USD_PER_CREDIT = Decimal("0.10")
POLICIES = """
version: 1
settings: {max_percent_per_cycle: 100%%}
providers:
  coder: {type: coder, url: "%(coder)s", token: "${CODER_TOKEN}", poll_interval: 5m}
  agents: {type: agentrun, url: "%(agents)s", token: "${AGENTS_TOKEN}", poll_interval: 5m}
pricing:
  coder: {usd_per_credit: 0.10}
sinks:
  team-chat: {type: log}
  oncall: {type: log}
budgets:
  - name: team-daily
    match: {provider: coder}
    budget: {per: owner, window: day, limit_usd: 10, timezone: Europe/Berlin}
    thresholds:
      - {at: 80%%, notify: [team-chat]}
      - {at: 100%%, forecast: true, notify: [oncall]}
      - {at: 100%%, do: stop, notify: [oncall]}
  - name: org-daily
    match: {provider: coder}
    budget: {per: all, window: day, limit_usd: 25, timezone: Europe/Berlin}
    thresholds:
      - {at: 100%%, do: kill_switch, target: {provider: agents}, notify: [oncall]}
"""
# Credits per day → USD per hour at $0.10 a credit: alice $1/h, carol $2/h, bob $0.40/h.
CREDITS = {"alice": 240, "carol": 480, "bob": 96}


@dataclass
class Rig:
    coder: CoderSim
    agents: AgentRunSim
    settings: Settings
    env: dict[str, str]
    clock: ManualClock
    ids: dict[str, str]

    def daemon(self) -> Daemon:
        policies = load_policy_set(self.settings, self.env)
        return Daemon(
            self.settings, policies=policies, clock=self.clock, env=self.env, sleep=_no_wait
        )


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(MIDNIGHT)
    coder = CoderSim(token=CODER_TOKEN, clock=clock)
    agents = AgentRunSim(token=AGENTS_TOKEN, clock=clock)
    ids = {
        owner: coder.add_workspace(name=f"{owner}-box", owner=owner, daily_cost=credits)
        for owner, credits in CREDITS.items()
    }
    async with (
        TestServer(coder.app(), host="127.0.0.1", port=0) as coder_server,
        TestServer(agents.app(), host="127.0.0.1", port=0) as agents_server,
    ):
        policy = tmp_path / "budgets.yaml"
        policy.write_text(
            POLICIES % {"coder": coder_server.make_url("/"), "agents": agents_server.make_url("/")}
        )
        settings = Settings(policy_path=[policy], state_dir=tmp_path / "state")
        env = {"CODER_TOKEN": CODER_TOKEN, "AGENTS_TOKEN": AGENTS_TOKEN}
        yield Rig(coder, agents, settings, env, clock, ids)


async def _run(rig: Rig, daemon: Daemon, until: datetime, kill_switch: list[Any]) -> None:
    """Poll every provider each STEP up to `until`, noting when the kill switch changes."""
    while rig.clock() < until:
        await daemon.run_cycle()
        if not kill_switch or kill_switch[-1][1] != rig.agents.workspace.kill_switch:
            kill_switch.append((rig.clock(), rig.agents.workspace.kill_switch))
        rig.clock.advance(seconds=STEP.total_seconds())


def _exact_spend(rig: Rig, owner: str, start: datetime, end: datetime) -> Decimal:
    """The workspace's cost in [start, end) from the simulator's own build history."""
    per_hour = Decimal(CREDITS[owner]) * USD_PER_CREDIT / 24
    seconds = sum(
        (min(stop, end) - max(begin, start)).total_seconds()
        for begin, stop in rig.coder.running_intervals(rig.ids[owner], end)
        if stop > start and begin < end
    )
    return per_hour * Decimal(str(seconds)) / 3600


def _crossings(events: list[Event], window_start: datetime) -> list[tuple[str, str, int, datetime]]:
    """(budget, scope, threshold, when) of every crossing in the window from `window_start`."""
    return [
        (e.data["budget"], e.data["scope"], e.data["threshold"], e.time)
        for e in events
        if e.type == ev.BUDGET_THRESHOLD_CROSSED
        and e.data["window_start"] == window_start.isoformat()
    ]


async def test_a_day_of_budgets_fires_each_threshold_once_and_undoes_at_midnight(rig: Rig):
    kill_switch: list[tuple[datetime, bool]] = []
    noon = MIDNIGHT + timedelta(hours=12, minutes=30)
    next_midnight = MIDNIGHT + timedelta(hours=24)
    async with rig.daemon() as first:
        await _run(rig, first, noon, kill_switch)
        assert first.store is not None
        report = await explanation(
            first.store, WorkspaceId("coder", rig.ids["alice"]), first.policies, now=rig.clock()
        )
    assert report is not None
    team, org = report["budgets"]
    print("DEBUG", team["spent"], org["spent"], org)
    assert (team["budget"], team["scope"], team["limit"]) == ("team-daily", "alice", "10")
    assert [t["fired"] for t in team["thresholds"]] == [True, True, True]  # 80%, forecast, 100%
    assert Decimal(team["workspace_spent"]) == Decimal(team["spent"])  # her only workspace
    assert (org["budget"], org["scope"], org["thresholds"][0]["fired"]) == (
        "org-daily",
        "all",
        False,
    )
    assert budget_line(team).startswith("budget team-daily (owner alice): $10.")
    async with rig.daemon() as second:  # a restart in the middle of the day
        await _run(rig, second, next_midnight, kill_switch)
        assert second.store is not None
        ledger = {
            row.owner: row.amount
            for row in await second.store.spend_by_day(BERLIN_DAY, "Europe/Berlin")
        }
        used = second.metrics.registry.get_sample_value(
            "warden_budget_used_ratio", {"policy": "team-daily", "scope": "bob"}
        )
        await _run(rig, second, next_midnight + timedelta(minutes=15), kill_switch)
        events = await second.store.events_after(0, limit=10_000)
    assert used is not None
    assert abs(Decimal(str(used)) - ledger["bob"] / 10) < Decimal("0.01")

    # Spend: within 1% of what the simulator's builds say each workspace ran.
    for owner in CREDITS:
        exact = _exact_spend(rig, owner, MIDNIGHT, next_midnight)
        assert abs(ledger[owner] - exact) <= exact / 100, (owner, ledger[owner], exact)

    # Thresholds: each fires once per scope, at the first poll at or after its moment.
    crossed = _crossings(events, MIDNIGHT)
    assert len(crossed) == len(set((b, s, i) for b, s, i, _ in crossed))
    fired = {(b, s, i): at for b, s, i, at in crossed}
    hours = {"alice": 1, "carol": 2, "bob": Decimal("0.4")}  # USD per hour
    for owner, rate in hours.items():
        for index, share in ((0, Decimal("0.8")), (2, Decimal(1))):
            due = MIDNIGHT + timedelta(hours=float(10 * share / rate))
            if due >= next_midnight:
                assert ("team-daily", owner, index) not in fired
            else:
                assert due <= fired[("team-daily", owner, index)] < due + STEP
    # The forecast fires before the crossing for the owners who cross ...
    assert fired[("team-daily", "alice", 1)] < fired[("team-daily", "alice", 2)]
    assert fired[("team-daily", "carol", 1)] < fired[("team-daily", "carol", 2)]
    # ... and bob, whose $9.60 a day never reaches $10, is never forecast to.
    assert ("team-daily", "bob", 1) not in fired

    # The org-wide budget: alice $10 + carol $10 + bob $0.40/h reaches $25 at 12:30.
    org_due = MIDNIGHT + timedelta(hours=12, minutes=30)
    assert org_due <= fired[("org-daily", "all", 0)] < org_due + STEP
    assert [on for _, on in kill_switch] == [False, True, False]
    switched_on, switched_off = kill_switch[1][0], kill_switch[2][0]
    assert org_due <= switched_on < org_due + STEP
    assert next_midnight <= switched_off < next_midnight + STEP

    # The stops and their undo: alice and carol, stopped when spent, resumed at midnight.
    stopped = {e.data["workspace"] for e in events if e.type == ev.WORKSPACE_STOPPED}
    resumed = {e.data["workspace"] for e in events if e.type == ev.WORKSPACE_RESUMED}
    expected = {f"coder/{rig.ids['alice']}", f"coder/{rig.ids['carol']}"}
    assert stopped == resumed == expected
    # The kill switch is told by its own name, on and off, never as a stop.
    engaged = {e.data["workspace"] for e in events if e.type == ev.KILL_SWITCH_ENGAGED}
    released = {e.data["workspace"] for e in events if e.type == ev.KILL_SWITCH_RELEASED}
    assert engaged == released == {f"agents/{rig.agents.workspace.id}"}
    for owner in ("alice", "carol"):
        assert rig.coder.workspace(rig.ids[owner])["latest_build"]["status"] == "running"
    resets = [e for e in events if e.type == ev.BUDGET_WINDOW_RESET]
    assert sorted((e.data["budget"], e.data["scope"]) for e in resets) == [
        ("org-daily", "all"),
        ("team-daily", "alice"),
        ("team-daily", "bob"),
        ("team-daily", "carol"),
    ]
