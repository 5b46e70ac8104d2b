"""The demo's simulators and policies work together: every platform answers, Warden acts."""

from __future__ import annotations

from pathlib import Path

from warden.daemon import Daemon, load_policy_set
from warden.demo import DEMO_POLICIES, simulators
from warden.model import DecisionKind
from warden.settings import Settings


async def test_demo_policies_load_and_every_simulated_platform_is_observed(tmp_path: Path):
    async with simulators() as sims:
        settings = Settings(policy_path=[DEMO_POLICIES], state_dir=tmp_path)
        policies = load_policy_set(settings, sims.env)
        async with Daemon(settings, policies=policies, env=sims.env) as daemon:
            results = await daemon.run_cycle()
    assert {r.provider for r in results} == {
        "coder-demo",
        "strongly-demo",
        "mage-demo",
        "mage-cloud-demo",
        "agentrun-demo",
    }
    assert [r.error for r in results] == [None] * 5
    kinds = {(r.provider, d.kind) for r in results for d in r.decisions}
    assert ("coder-demo", DecisionKind.WARN) in kinds
    assert ("coder-demo", DecisionKind.ACT) in kinds  # the over-age one is extended at once
    assert ("mage-demo", DecisionKind.WARN) in kinds
