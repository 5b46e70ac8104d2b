"""A spent budget's actions on the agent-run platform: throttle and restore, the kill
switch on a plan that lacks it, and a budget in dry run. Real simulators, moved time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.model import Event
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim
from warden.sim.coder import CoderSim
from warden.spend.feeds import SpendRecord

CODER_TOKEN = "budget-actions-coder-token-0123456789"
AGENTS_TOKEN = "budget-actions-agents-token-0123456789"
MORNING = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(coder)s", token: "${CODER_TOKEN}", poll_interval: 5m}
  agents: {type: agentrun, url: "%(agents)s", token: "${AGENTS_TOKEN}", poll_interval: 5m}
pricing:
  coder: {usd_per_credit: 0.10}
budgets:
  - name: org-daily
    match: {provider: coder}
    budget: {per: all, window: day, limit_usd: 1}
    dry_run: %(dry_run)s
    thresholds:
      - {at: 100%%, do: %(do)s, target: {provider: agents}}
"""
THROTTLE = "throttle, throttle: {max_concurrent_runs: 1}"


@dataclass
class Rig:
    agents: AgentRunSim
    settings: Settings
    clock: ManualClock
    env: dict[str, str]

    def daemon(self) -> Daemon:
        policies = load_policy_set(self.settings, self.env)
        return Daemon(
            self.settings, policies=policies, clock=self.clock, env=self.env, sleep=_no_wait
        )

    async def polls(self, daemon: Daemon, count: int) -> list[Event]:
        """`count` cycles five minutes apart; every event written so far."""
        for _ in range(count):
            await daemon.run_cycle()
            self.clock.advance(minutes=5)
        assert daemon.store is not None
        return await daemon.store.events_after(0, limit=1000)


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
def rig_for(tmp_path: Path):
    """A rig whose budget does `do` (and is in dry run or not) on an agents plan."""

    async def build(do: str, *, plan: str = "scale", dry_run: bool = False) -> AsyncIterator[Rig]:
        clock = ManualClock(MORNING)
        coder = CoderSim(token=CODER_TOKEN, clock=clock)
        coder.add_workspace(name="gpu", owner="alice", daily_cost=480)  # $2 an hour
        agents = AgentRunSim(token=AGENTS_TOKEN, clock=clock, plan=plan)  # type: ignore[arg-type]
        async with (
            TestServer(coder.app(), host="127.0.0.1", port=0) as coder_server,
            TestServer(agents.app(), host="127.0.0.1", port=0) as agents_server,
        ):
            policy = tmp_path / "budgets.yaml"
            policy.write_text(
                POLICIES
                % {
                    "coder": coder_server.make_url("/"),
                    "agents": agents_server.make_url("/"),
                    "do": do,
                    "dry_run": str(dry_run).lower(),
                }
            )
            env = {"CODER_TOKEN": CODER_TOKEN, "AGENTS_TOKEN": AGENTS_TOKEN}
            yield Rig(agents, Settings(policy_path=[policy], state_dir=tmp_path), clock, env)

    return build


def _of(events: list[Event], type_: str) -> list[Event]:
    return [e for e in events if e.type == type_]


async def test_a_throttle_lowers_the_limits_and_the_reset_restores_them_exactly(rig_for):
    async for rig in rig_for(THROTTLE):
        before = rig.agents.workspace.max_concurrent_runs
        async with rig.daemon() as daemon:
            events = await rig.polls(daemon, 8)  # $1 is spent after 30 minutes
            assert rig.agents.workspace.max_concurrent_runs == 1
            [throttled] = _of(events, ev.WORKSPACE_THROTTLED)
            assert throttled.data["replaced"]["previous"] == {"max_concurrent_runs": before}
            rig.clock.set(datetime(2026, 11, 24, 23, 55, tzinfo=UTC))
            events = await rig.polls(daemon, 3)  # across midnight UTC, the window's end
        assert rig.agents.workspace.max_concurrent_runs == before
        assert len(_of(events, ev.WORKSPACE_THROTTLED)) == 1  # once in its window
        [restored] = _of(events, ev.WORKSPACE_RESTORED)
        assert restored.data["policy"] == "org-daily"
        [reset] = _of(events, ev.BUDGET_WINDOW_RESET)
        assert reset.data["undo"] == [f"agents/{rig.agents.workspace.id}"]


async def test_a_kill_switch_the_plan_lacks_degrades_the_budget_once_without_a_crash(rig_for):
    async for rig in rig_for("kill_switch", plan="pro"):
        async with rig.daemon() as daemon:
            events = await rig.polls(daemon, 12)
        assert rig.agents.workspace.kill_switch is False
        [degraded] = _of(events, ev.POLICY_DEGRADED)
        assert degraded.data["policy"] == "org-daily"
        assert "Scale plan" in degraded.data["missing"]
        assert len(_of(events, ev.ACTION_FAILED)) == 1  # not retried every cycle
        assert len(_of(events, ev.BUDGET_THRESHOLD_CROSSED)) == 1


async def test_a_budget_in_dry_run_plans_its_kill_switch_and_never_touches_it(rig_for):
    async for rig in rig_for("kill_switch", dry_run=True):
        async with rig.daemon() as daemon:
            events = await rig.polls(daemon, 10)
        assert rig.agents.workspace.kill_switch is False
        [planned] = _of(events, ev.ACTION_PLANNED)
        assert (planned.data["policy"], planned.data["action"]) == ("org-daily", "kill_switch")
        assert not [m for m, _p in rig.agents.calls if m == "POST"]


FED = """
version: 1
providers:
  agents: {type: agentrun, url: "%(agents)s", token: "${AGENTS_TOKEN}", poll_interval: 5m}
budgets:
  - name: agent-runs
    match: {provider: agents}
    budget: {per: all, window: day, limit_usd: 5}
    thresholds:
      - {at: 100%%, forecast: true}
      - {at: 100%%, do: kill_switch}
"""


def _record(record_id: str, amount: str, at: datetime, owner: str = "alice") -> SpendRecord:
    return SpendRecord.model_validate(
        {
            "id": record_id,
            "provider": "agents",
            "owner": owner,
            "amount": amount,
            "currency": "USD",
            "at": at.isoformat(),
        }
    )


async def test_fed_spend_counts_once_toward_a_budget_that_switches_agent_runs_off(
    tmp_path: Path,
):
    clock = ManualClock(MORNING)
    agents = AgentRunSim(token=AGENTS_TOKEN, clock=clock)
    async with TestServer(agents.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "fed.yaml"
        policy.write_text(FED % {"agents": server.make_url("/")})
        rig = Rig(
            agents,
            Settings(policy_path=[policy], state_dir=tmp_path),
            clock,
            {"AGENTS_TOKEN": AGENTS_TOKEN},
        )
        async with rig.daemon() as daemon:
            assert daemon.store is not None
            early = [_record("run-1", "2", MORNING), _record("run-2", "1", MORNING, "bob")]
            await daemon.store.add_spend_records(early, source="push", now=MORNING)
            events = await rig.polls(daemon, 1)  # $3 of $5, burning $3 an hour
            assert [e.data["threshold"] for e in _of(events, ev.BUDGET_THRESHOLD_CROSSED)] == [0]
            assert agents.workspace.kill_switch is False
            again = [*early, _record("run-3", "1.5", clock())]  # run-1 and run-2 repeated
            assert await daemon.store.add_spend_records(again, source="push", now=clock()) == (
                1,
                2,
            )
            events = await rig.polls(daemon, 1)  # $4.50: still under
            assert agents.workspace.kill_switch is False
            await daemon.store.add_spend_records(
                [_record("run-4", "0.5", clock())], source="push", now=clock()
            )
            events = await rig.polls(daemon, 2)
        assert agents.workspace.kill_switch is True
        [crossed] = [e for e in _of(events, ev.BUDGET_THRESHOLD_CROSSED) if e.data["threshold"]]
        assert crossed.data["spent"] == "5.000000"
