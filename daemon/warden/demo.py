"""`warden demo`: the daemon against the built-in simulators, with demo policies.

Everything is real except the platforms: the simulators are aiohttp servers on
ephemeral ports of 127.0.0.1, the state is a SQLite file in a temporary directory,
and the daemon runs its scheduler as in production. What it does is printed as
readable lines.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from aiohttp import web

from warden.budget.keeper import Review
from warden.clock import utc_now
from warden.daemon import CycleResult, Daemon, load_policy_set
from warden.logging import REDACTOR, configure_logging
from warden.report import left_alone_lines, outcome_lines
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim
from warden.sim.coder import CoderSim
from warden.sim.mage import MageCloudSim, MageSim
from warden.sim.strongly import StronglySim
from warden.spend.report import spend_table, totals

DEMO_POLICIES = Path(__file__).parent / "sim" / "demo-policies.yaml"


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on an ephemeral port of 127.0.0.1; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class DemoPrinter:
    """Prints what each cycle warned, did and left alone; the fleet once, at the start."""

    def __init__(self) -> None:
        self._shown: set[str] = set()

    def __call__(self, result: CycleResult) -> None:
        if result.observation is None:
            print(f"{utc_now():%H:%M:%S} {result.provider}: unreachable: {result.error}")
            return
        names = {ws.id: ws for ws in result.observation.workspaces}
        lines = list(outcome_lines(result.outcome, names))
        if result.provider not in self._shown:  # each provider's fleet, once
            self._shown.add(result.provider)
            lines += list(
                left_alone_lines(
                    result.observation.workspaces,
                    result.decisions,
                    now=result.observation.observed_at,
                )
            )
            lines += [
                f"SKIPPED   {result.provider}/{s.native_id}: {s.reason}"
                for s in result.observation.skipped
            ]
        lines += budget_lines(result.review)
        for line in lines:
            print(f"{utc_now():%H:%M:%S} {line}", flush=True)


def budget_lines(review: Review | None) -> list[str]:
    """A line for each budget threshold that fired in a cycle."""
    lines = []
    for standing in review.standings if review else []:
        for index in standing.fired:
            threshold = standing.budget.thresholds[index]
            what = "forecast to reach" if threshold.forecast else "reached"
            lines.append(
                f"BUDGET    {standing.budget.name} ({standing.scope}): ${standing.spent:.4f} of "
                f"${standing.limit} {what} {threshold.at}% -> {threshold.do}"
            )
    return lines


@dataclass
class Simulators:
    """The demo's platforms, served on ephemeral ports; `env` fills the demo policies."""

    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


@asynccontextmanager
async def simulators() -> AsyncIterator[Simulators]:
    """All four platforms' simulators, each with its demo fleet."""
    now = utc_now()
    found = Simulators()
    coder = CoderSim(token=secrets.token_urlsafe(16), build_seconds=3.0)
    coder.seed_demo_fleet(now)
    strongly = StronglySim(api_key=secrets.token_urlsafe(16), start_seconds=3, ready_seconds=3)
    strongly.seed_demo_fleet(now)
    mage = MageSim(api_key=secrets.token_urlsafe(16), start_seconds=3)
    mage.seed_demo_fleet(now)
    cloud_password = secrets.token_urlsafe(12)
    mage_cloud = MageCloudSim(
        api_key=secrets.token_urlsafe(16), email="demo@example.com", password=cloud_password
    )
    mage_cloud.seed_demo_fleet(now)
    agentrun_token = secrets.token_urlsafe(16)
    agentrun = AgentRunSim(token=agentrun_token)
    async with (
        serve(coder.app()) as coder_url,
        serve(strongly.app()) as strongly_url,
        serve(mage.app()) as mage_url,
        serve(mage_cloud.app()) as mage_cloud_url,
        serve(agentrun.app()) as agentrun_url,
    ):
        found.env = {
            "DEMO_CODER_URL": coder_url,
            "DEMO_CODER_TOKEN": coder.token,
            "DEMO_STRONGLY_URL": strongly_url,
            "DEMO_STRONGLY_KEY": strongly.api_key,
            "DEMO_MAGE_URL": mage_url,
            "DEMO_MAGE_KEY": mage.api_key or "",
            "DEMO_MAGE_CLOUD_URL": mage_cloud_url,
            "DEMO_MAGE_CLOUD_KEY": mage_cloud.api_key,
            "DEMO_MAGE_CLOUD_PASSWORD": cloud_password,
            "DEMO_AGENTRUN_URL": agentrun_url,
            "DEMO_AGENTRUN_TOKEN": agentrun_token,
        }
        found.secrets = [v for k, v in found.env.items() if not k.endswith("_URL")]
        yield found


async def run_demo(seconds: float) -> int:
    configure_logging(level="warning", fmt="console")
    async with simulators() as sims, _state_dir() as state:
        REDACTOR.add(sims.secrets)
        env = dict(os.environ) | sims.env
        settings = Settings(policy_path=[DEMO_POLICIES], state_dir=state, admin_bind="127.0.0.1:0")
        policies = load_policy_set(settings, env)
        print("Warden demo: simulated Coder, Strongly.ai, Mage Pro, Mage Cloud and agent-run")
        print(f"policies: {', '.join(p.name for p in policies.policies)} (from {DEMO_POLICIES})")
        print(f"budgets: {', '.join(b.name for b in policies.budgets)}")
        print(f"state: {state}. Ctrl-C to stop.\n")
        async with Daemon(settings, policies=policies, env=env, on_cycle=DemoPrinter()) as daemon:
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.serve, stop)
                if seconds > 0:
                    await anyio.sleep(seconds)
                    stop.set()
            assert daemon.store is not None
            rows = await daemon.store.spend_by_day(utc_now().date())
            print(
                "\n" + spend_table(totals(rows, by="provider"), day=utc_now().date(), by="provider")
            )
    print("\ndemo finished.", file=sys.stderr)
    return 0


@asynccontextmanager
async def _state_dir() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="warden-demo-") as directory:
        yield Path(directory)
