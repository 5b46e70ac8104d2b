"""The agent-run platform's kill switch driven by a policy, end to end, and its plan gate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim

TOKEN = "agentrun-test-token-0123456789"
CLOSING = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # 19:00 in Berlin, a Tuesday
OPENING = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
POLICIES = """
version: 1
providers:
  agents: {type: agentrun, url: "%(url)s", token: "${TOKEN}"}
schedules:
  office: {timezone: Europe/Berlin, open: ["Mon-Fri 08:00-19:00"], holidays: DE}
policies:
  - name: agents-office-hours
    match: {provider: [agents]}
    schedule: office
"""


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
async def agents(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[AgentRunSim, Daemon]]:
    clock.set(CLOSING.replace(hour=17, minute=58))
    sim = AgentRunSim(token=TOKEN, clock=clock)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        settings = Settings(policy_path=[policy], state_dir=tmp_path)
        env = {"TOKEN": TOKEN}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), clock=clock, env=env, sleep=_no_wait
        ) as daemon:
            yield sim, daemon


def kill_switch_posts(sim: AgentRunSim) -> list[str]:
    return [p for m, p in sim.calls if m == "POST"]


async def test_the_kill_switch_goes_on_at_closing_and_off_at_opening(agents, clock: ManualClock):
    sim, daemon = agents
    await daemon.run_cycle()  # 17:58 UTC: open, nothing to do
    assert sim.workspace.kill_switch is False
    clock.set(CLOSING.replace(minute=1))
    await daemon.run_cycle()
    assert sim.workspace.kill_switch is True
    clock.set(OPENING.replace(minute=1))
    await daemon.run_cycle()
    assert sim.workspace.kill_switch is False
    assert kill_switch_posts(sim) == ["/v1/workspace/kill-switch"] * 2


async def test_a_plan_without_the_kill_switch_degrades_the_policy_once_without_retries(
    agents, clock: ManualClock
):
    sim, daemon = agents
    sim.plan = "pro"
    await daemon.run_cycle()
    clock.set(CLOSING.replace(minute=1))
    [result] = await daemon.run_cycle()
    assert len(result.outcome.failed) == 1
    assert "Scale plan" in result.outcome.failed[0][1]
    clock.advance(minutes=1)
    [again] = await daemon.run_cycle()
    assert daemon.store is not None
    events = await daemon.store.events_after(0, limit=1000)
    degraded = [e for e in events if e.type == ev.POLICY_DEGRADED]
    assert [e.data["missing"] for e in degraded] == ["kill_switch (Scale plan)"]
    assert kill_switch_posts(sim) == ["/v1/workspace/kill-switch"]  # one request, no retry
    assert sim.workspace.kill_switch is False
    assert again.outcome.failed == []
